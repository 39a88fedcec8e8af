"""One probe cycle: every node and backend probed concurrently, results stored as
they arrive, so a node that hangs delays nobody's status but its own."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.utils import timezone

from core import httpclient
from core.httpclient import Credential
from network import allowlist
from network.choices import BackendStatus
from network.gpus import probe_gpus
from network.models import OllamaNode, RpcBackend
from network.probes import NodeProbe, probe_node
from network.rpc import RpcProbe, probe_backend
from network.services import recording, rounds
from network.status import needs_session

FLUSH_EVERY = 0.05  # seconds: results that arrive together are written together


@dataclass
class CycleReport:
    nodes: int = 0
    backends: int = 0
    changes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "nodes": self.nodes,
            "backends": self.backends,
            "changes": self.changes,
            "seconds": round(self.seconds, 3),
        }


def run_cycle(
    *,
    now: dt.datetime,
    node_ids: list[int] | None = None,
    backend_ids: list[int] | None = None,
    round: int | None = None,
    bookkeeping: bool = True,
) -> CycleReport:
    """Probe everything once, or the given ids (one shard of a sharded round).

    In a round, what was already recorded in it (a batch delivered again after its
    worker died) is not probed again. Return what was done. Call from a thread.
    Without bookkeeping (a probe the gateway asked for out of turn) the cycle's
    figures are not recorded as the last cycle's.
    """
    tags_due = now - dt.timedelta(seconds=settings.SOLLOL_PROBE_TAGS_INTERVAL)
    node_rows = OllamaNode.objects.only(
        "id",
        "url",
        "host",
        "port",
        "source",
        "tags_checked_at",
        "credential",
        "kind",
        "gpu_exporter",
    )
    backend_rows = RpcBackend.objects.only(
        "id", "host", "port", "source", "status", "session_at"
    )
    if node_ids is not None:
        node_rows = node_rows.filter(id__in=node_ids)
    if backend_ids is not None:
        backend_rows = backend_rows.filter(id__in=backend_ids)
    if round is not None:
        node_rows = node_rows.filter(probe_round__lt=round)
        backend_rows = backend_rows.filter(probe_round__lt=round)
    nodes = [
        (
            node.id,
            node.url,
            node.tags_checked_at is None or node.tags_checked_at <= tags_due,
            _gate(node),
            Credential.from_stored(node.credential),
            node.kind,
            node.gpu_exporter,
        )
        for node in node_rows
    ]
    backends = [
        (
            backend.id,
            backend.host,
            backend.port,
            needs_session(backend, now),
            _gate(backend),
        )
        for backend in backend_rows
    ]
    started = time.perf_counter()
    # One thread writes, in order; its connection is closed when the cycle ends.
    with ThreadPoolExecutor(1, thread_name_prefix="probe-writer") as writer:
        try:
            changes = asyncio.run(_probe_all(nodes, backends, writer, round))
        finally:
            # close_all looks up the connections of the thread it runs in.
            writer.submit(connections.close_all).result()
    report = CycleReport(
        nodes=len(nodes),
        backends=len(backends),
        changes=changes,
        seconds=time.perf_counter() - started,
    )
    if bookkeeping:
        rounds.record_cycle(report.as_dict(), started_at=now, round=round)
    recording.publish_node_samples([node[0] for node in nodes])
    return report


async def _probe_all(
    nodes, backends, writer: ThreadPoolExecutor, round: int | None = None
) -> int:
    loop = asyncio.get_running_loop()
    timeout = settings.SOLLOL_PROBE_TIMEOUT
    limit = asyncio.Semaphore(settings.SOLLOL_PROBE_CONCURRENCY)
    node_results: list = []
    backend_results: list = []
    refused_nodes: list = []
    refused_backends: list = []
    changes = 0

    async def flush() -> None:
        nonlocal node_results, backend_results, refused_nodes, refused_backends
        nonlocal changes
        batch_nodes, node_results = node_results, []
        batch_backends, backend_results = backend_results, []
        refused = (refused_nodes, refused_backends)
        refused_nodes, refused_backends = [], []
        if any(refused):
            changes += await loop.run_in_executor(writer, _record_refused, *refused)
        if batch_nodes:
            changes += await loop.run_in_executor(
                writer, _record, recording.record_node_probes, batch_nodes, round
            )
        if batch_backends:
            changes += await loop.run_in_executor(
                writer, _record, recording.record_backend_probes, batch_backends, round
            )

    async def probe_one_node(
        node_id: int,
        url: str,
        with_tags: bool,
        gate: tuple | None,
        credential: Credential | None,
        kind: str,
        gpu_exporter: str,
    ) -> None:
        async with limit:
            started = time.monotonic()
            try:
                address = await _allowed(gate, timeout)
            except allowlist.Refused as refusal:
                refused_nodes.append((node_id, str(refusal)))
                return
            except (OSError, TimeoutError) as exc:
                error = f"cannot resolve {gate[0]}: {exc}"[:300]
                node_results.append(
                    (node_id, NodeProbe(ok=False, answered=False, error=error))
                )
                return
            probe = await probe_node(
                url,
                timeout=max(0.01, timeout - (time.monotonic() - started)),
                with_tags=with_tags,
                connect_to=address,
                credential=credential,
                pool=pool,
                kind=kind,
            )
            if gpu_exporter:  # the operator's own: not gated by the allow-list
                gpus, why = await probe_gpus(
                    gpu_exporter,
                    timeout=max(0.01, timeout - (time.monotonic() - started)),
                    pool=pool,
                )
                probe = dataclasses.replace(probe, gpus=gpus, gpu_error=why)
        node_results.append((node_id, probe))

    async def probe_one_backend(
        backend_id: int, host: str, port: int, session: bool, gate: tuple | None
    ):
        async with limit:
            started = time.monotonic()
            try:
                address = await _allowed(gate, timeout) or host
            except allowlist.Refused as refusal:
                refused_backends.append((backend_id, str(refusal)))
                return
            except (OSError, TimeoutError) as exc:
                error = f"cannot resolve {host}: {exc}"[:300]
                backend_results.append(
                    (backend_id, RpcProbe(BackendStatus.OFFLINE, error=error), False)
                )
                return
            probe = await probe_backend(
                address,
                port,
                timeout=max(0.01, timeout - (time.monotonic() - started)),
                deep=session,
            )
        backend_results.append((backend_id, probe, session))

    async with httpclient.Pool(connections=settings.SOLLOL_PROBE_CONCURRENCY) as pool:
        tasks = [asyncio.create_task(probe_one_node(*node)) for node in nodes] + [
            asyncio.create_task(probe_one_backend(*backend)) for backend in backends
        ]
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=FLUSH_EVERY)
            await flush()
    return changes


def _record(record, results, round=None) -> int:
    return record(results, now=timezone.now(), round=round)


def _record_refused(nodes, backends) -> int:
    return recording.record_rejections(nodes, backends, now=timezone.now())


def _gate(target: OllamaNode | RpcBackend) -> tuple[str, int] | None:
    """Return (host, port) to check against the allow-list, None for trusted ones."""
    if target.source in allowlist.GATED_SOURCES:
        return target.host, target.port
    return None


async def _allowed(gate: tuple[str, int] | None, timeout: float) -> str | None:
    """Return the checked address to connect to (None: connect by name as usual)."""
    if gate is None:
        return None
    return await allowlist.resolve_allowed(*gate, timeout=timeout)

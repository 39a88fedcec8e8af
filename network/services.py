"""Every change to the known fleet of nodes and backends, and the events it makes."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from activity.choices import Stream
from activity.models import RequestRecord
from activity.services import NewEvent, record_events
from core import addresses, realtime
from core.db import save_fields
from core.jsonio import PayloadError
from network import allowlist
from network.choices import BackendStatus, NodeStatus, Source
from network.models import (
    NodeStatusChange,
    OllamaNode,
    ProbeCycle,
    Removed,
    RpcBackend,
)
from network.probes import NodeProbe

if TYPE_CHECKING:
    from network.rpc import RpcProbe

logger = logging.getLogger(__name__)

LOCALHOST_NODE = "http://127.0.0.1:11434"
LOCALHOST_BACKEND = "127.0.0.1:50052"
LATENCY_SMOOTHING = 0.2  # weight of the newest sample in the moving average


# --- nodes ---------------------------------------------------------------------


_NODE_COLUMNS = (
    "id",
    "url",
    "host",
    "port",
    "status",
    "source",
    "version",
    "latency_ms",
    "latency_avg_ms",
    "vram_used_bytes",
    "consecutive_failures",
    "last_error",
    "last_seen",
    "last_probe",
)


def node_data(node: OllamaNode) -> dict[str, Any]:
    """Return the node as the API shows it."""
    return {
        **_node_summary({column: getattr(node, column) for column in _NODE_COLUMNS}),
        "models": node.disk_models,
        "loaded_models": node.loaded_models,
    }


def node_list_json(nodes: QuerySet[OllamaNode]) -> str:
    """Return ``{"nodes": [...], "total": n}`` as JSON text, as node_data shows each.

    The models lists are the bulk of the list (1.7 MB for 1,000 nodes), and they are
    stored as JSON already: their text is copied from the database into the answer
    instead of being decoded into objects and encoded again (five times faster at
    1,000 nodes, see bench/RESULTS.md g).
    """
    rows = nodes.annotate(
        models_json=Cast("disk_models", TextField()),
        loaded_json=Cast("loaded_models", TextField()),
    ).values_list(*_NODE_COLUMNS, "models_json", "loaded_json")
    parts = []
    for row in rows:
        summary = _dumps(_node_summary(dict(zip(_NODE_COLUMNS, row, strict=False))))
        parts.append(f'{summary[:-1]},"models":{row[-2]},"loaded_models":{row[-1]}}}')
    return f'{{"nodes":[{",".join(parts)}],"total":{len(parts)}}}'


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _node_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "address": addresses.host_port(row["host"], row["port"]),
        "status": row["status"],
        "source": row["source"],
        "version": row["version"],
        "latency_ms": _round(row["latency_ms"]),
        "latency_avg_ms": _round(row["latency_avg_ms"]),
        # A node that does not answer unloads nothing: what it held is unknown.
        "loaded_models_known": row["status"]
        in (NodeStatus.HEALTHY, NodeStatus.DEGRADED),
        "vram_used_bytes": row["vram_used_bytes"],
        "consecutive_failures": row["consecutive_failures"],
        "last_error": row["last_error"],
        "last_seen": _timestamp(row["last_seen"]),
        "last_probe": _timestamp(row["last_probe"]),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _timestamp(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _node_event(type: str, node: OllamaNode, message: str, **extra) -> NewEvent:
    payload = {"node": node.url, "node_id": node.id, "status": node.status, **extra}
    return NewEvent(Stream.NODES, type, message, payload)


def _parse_all(
    values: Iterable[str], parse: Callable[[str], tuple[str, str, int]], source: str
) -> dict[str, tuple[str, int]]:
    """Return {address: (host, port)} of the values that parse; log the others.

    One bad entry from an app or the environment must not hide the good ones.
    """
    parsed: dict[str, tuple[str, int]] = {}
    for value in values:
        try:
            address, host, port = parse(value)
        except PayloadError as exc:
            logger.warning("ignoring an address from %s: %s", source, exc)
            continue
        parsed[address] = (host, port)
    return parsed


# Sources that are the operator's own say: they bring back what was removed.
OPERATOR_SOURCES = frozenset({Source.CONFIG, Source.LOCALHOST, Source.API})


def ensure_nodes(
    values: Iterable[str], *, source: str, now: dt.datetime
) -> list[OllamaNode]:
    """Make sure the nodes exist; return the ones that were new."""
    wanted = _parse_all(values, addresses.node_url, source)
    if not wanted:
        return []
    with transaction.atomic():
        created = _create_missing(OllamaNode, "url", wanted, source=source, now=now)
        record_events(
            [
                _node_event(
                    "node_discovered",
                    node,
                    f"✅ New node discovered: {node.url}"
                    + (f" (rejected: {node.last_error})" if node.last_error else ""),
                    source=node.source,
                )
                for node in created
            ],
            now=now,
        )
    return created


def _create_missing(
    model: type[OllamaNode] | type[RpcBackend],
    key: str,
    wanted: dict[str, tuple[str, int]],
    *,
    source: str,
    now: dt.datetime,
) -> list:
    """Insert the wanted nodes or backends not stored yet; return those it made.

    What the operator removed stays removed when an application or the scan
    reports it again; the operator's own sources (configuration, localhost, the
    API) bring it back and lift the removal.
    """
    kind = Removed.Kind.NODE if model is OllamaNode else Removed.Kind.BACKEND
    removed = Removed.objects.filter(kind=kind, key__in=list(wanted))
    if source in OPERATOR_SOURCES:
        removed.delete()
        known = set()
    else:
        known = set(removed.values_list("key", flat=True))
    known |= set(
        model.objects.filter(**{f"{key}__in": list(wanted)}).values_list(key, flat=True)
    )
    # The same host:port is one node, whatever the scheme it was given with.
    taken = set(
        model.objects.filter(
            host__in={host for host, _ in wanted.values()}
        ).values_list("host", "port")
    )
    new = []
    for value, (host, port) in wanted.items():
        if value in known or (host, port) in taken:
            continue
        taken.add((host, port))
        new.append(
            _refused_at_once(
                model(
                    **{key: value}, host=host, port=port, source=source, created_at=now
                )
            )
        )
    model.objects.bulk_create(new, ignore_conflicts=True)
    # ignore_conflicts leaves pks unset: read back the rows this call created.
    return list(
        model.objects.filter(
            **{f"{key}__in": [getattr(row, key) for row in new]},
            created_at=now,
            source=source,
        )
    )


def _refused_at_once(target: OllamaNode | RpcBackend) -> OllamaNode | RpcBackend:
    """Store a told-about IP literal outside the allowed ranges as rejected.

    Host names are checked when they are resolved, before each probe.
    """
    if target.source in allowlist.GATED_SOURCES:
        reason = allowlist.literal_refusal(target.host)
        if reason:
            target.status = NodeStatus.REJECTED  # the same value for backends
            target.last_error = f"not contacted: {reason}"
    return target


def add_node(value: str, *, now: dt.datetime) -> tuple[OllamaNode, bool]:
    """Add a node by hand (API); return it and whether it was new."""
    url, host, port = addresses.node_url(value)
    created = ensure_nodes([url], source=Source.API, now=now)
    if created:
        return created[0], True
    return OllamaNode.objects.get(host=host, port=port), False


class StillConfigured(Exception):
    """The operator's configuration would add it back at once; its text says where."""


def _still_configured(
    key: str, source: str, parse: Callable, setting: str, localhost: str
) -> str | None:
    """Say why the operator's configuration would add key back at once, if it would."""
    configured = _parse_all(getattr(settings, setting), parse, Source.CONFIG)
    if source == Source.CONFIG and key in configured:
        return f"{key} is in {setting}: remove it there"
    if (
        source == Source.LOCALHOST
        and settings.SOLLOL_DISCOVER_LOCALHOST
        and key in _parse_all([localhost], parse, Source.LOCALHOST)
    ):
        return f"{key} is watched because SOLLOL_DISCOVER_LOCALHOST is true"
    return None


def _remember_removal(kind: str, key: str, now: dt.datetime) -> None:
    Removed.objects.update_or_create(kind=kind, key=key, defaults={"removed_at": now})


def remove_node(node_id: int, *, now: dt.datetime) -> OllamaNode | None:
    """Forget a node; return it, or None if there was none with that id.

    Raise StillConfigured for one the configuration would add back at once.
    """
    with transaction.atomic():
        node = OllamaNode.objects.select_for_update().filter(pk=node_id).first()
        if node is None:
            return None
        if why := _still_configured(
            node.url,
            node.source,
            addresses.node_url,
            "SOLLOL_OLLAMA_NODES",
            LOCALHOST_NODE,
        ):
            raise StillConfigured(why)
        event = _node_event("node_removed", node, f"🗑️ Node removed: {node.url}")
        node.delete()
        _remember_removal(Removed.Kind.NODE, node.url, now)
        record_events([event], now=now)
    return node


def next_node_status(
    node: OllamaNode, probe: NodeProbe, reported: tuple[int, int] | None = None
) -> tuple[str, str]:
    """Return the status a probe moves the node to, and why, in words.

    Failing is noticed at once (one failed probe: unhealthy); recovering from
    degraded takes SOLLOL_PROBE_RECOVER_AFTER good probes in a row, so a node on
    the edge of the slow threshold does not flap.

    reported is (requests, failed) that routers and apps reported for the node
    over the last SOLLOL_REPORTED_WINDOW seconds. Ollama answers "server busy"
    (503) only to inference requests, never to the probe's /api/version and
    /api/ps: a node that answers its probes but fails most of the work sent to
    it is degraded too, and it is the routers who can tell.
    """
    if not probe.answered:
        if node.consecutive_failures >= settings.SOLLOL_PROBE_OFFLINE_AFTER:
            return NodeStatus.OFFLINE, (
                f"{node.consecutive_failures} probes failed in a row: {probe.error}"
            )
        return NodeStatus.UNHEALTHY, probe.error
    if not probe.ok:
        return NodeStatus.DEGRADED, probe.error
    slow_ms = settings.SOLLOL_PROBE_SLOW_AFTER * 1000
    if probe.latency_ms is not None and probe.latency_ms > slow_ms:
        return NodeStatus.DEGRADED, f"slow: answered in {probe.latency_ms:.0f} ms"
    if reported is not None:
        requests, failed = reported
        if (
            requests >= settings.SOLLOL_REPORTED_MIN_REQUESTS
            and failed >= requests * settings.SOLLOL_REPORTED_FAILURE_RATE
        ):
            return NodeStatus.DEGRADED, (
                f"routers report {failed} of {requests} requests failed in the "
                f"last {settings.SOLLOL_REPORTED_WINDOW:g} s"
            )
    if (
        node.probe_status == NodeStatus.DEGRADED
        and node.consecutive_successes < settings.SOLLOL_PROBE_RECOVER_AFTER
    ):
        return NodeStatus.DEGRADED, "recovering"
    return NodeStatus.HEALTHY, ""


def _without_flapping(node: OllamaNode, status: str, reason: str) -> tuple[str, str]:
    """Return the status to show: the probe's, unless the node keeps changing.

    A node that fails every other probe would otherwise make an event per probe
    for as long as it does; flapping, it makes one, then one more when it settles.
    """
    # First sight (from unknown) is no change of mind.
    changed = status != node.probe_status != NodeStatus.UNKNOWN
    node.probe_status = status
    node.flap_score = node.flap_score * settings.SOLLOL_FLAP_DECAY + changed
    if node.status == NodeStatus.FLAPPING:
        # A node that died while flapping is reported as soon as it is offline
        # (SOLLOL_PROBE_OFFLINE_AFTER failures in a row), not once its score decays.
        if node.flap_score >= settings.SOLLOL_FLAP_END and status != NodeStatus.OFFLINE:
            return NodeStatus.FLAPPING, ""
        return status, f"stopped flapping; {reason}" if reason else "stopped flapping"
    if changed and node.flap_score >= settings.SOLLOL_FLAP_START:
        return NodeStatus.FLAPPING, (
            f"its status keeps changing (now {status}"
            + (f": {reason}" if reason else "")
            + "); status changes are not reported until it settles"
        )
    return status, reason


NODE_PROBE_FIELDS = [
    "status",
    "probe_status",
    "flap_score",
    "version",
    "latency_ms",
    "latency_avg_ms",
    "disk_models",
    "loaded_models",
    "vram_used_bytes",
    "consecutive_failures",
    "consecutive_successes",
    "last_error",
    "last_seen",
    "last_probe",
    "tags_checked_at",
    "probe_round",
]


def _apply_node_probe(node: OllamaNode, probe: NodeProbe, now: dt.datetime) -> None:
    node.last_probe = now
    if probe.answered:
        node.last_seen = now
        node.consecutive_failures = 0
    else:
        node.consecutive_failures += 1
    clean = probe.ok and (
        probe.latency_ms is None
        or probe.latency_ms <= settings.SOLLOL_PROBE_SLOW_AFTER * 1000
    )
    node.consecutive_successes = node.consecutive_successes + 1 if clean else 0
    node.last_error = probe.error
    if probe.version:
        node.version = probe.version
    if probe.latency_ms is not None:
        node.latency_ms = probe.latency_ms
        node.latency_avg_ms = (
            probe.latency_ms
            if node.latency_avg_ms is None
            else (1 - LATENCY_SMOOTHING) * node.latency_avg_ms
            + LATENCY_SMOOTHING * probe.latency_ms
        )
    if probe.loaded_models is not None:
        node.loaded_models = probe.loaded_models
        node.vram_used_bytes = sum(
            m.get("size_vram", 0) for m in probe.loaded_models if m.get("size_vram")
        )
    if probe.disk_models is not None:
        node.disk_models = probe.disk_models
        node.tags_checked_at = now


def _model_key(model: dict[str, Any]) -> str:
    return model.get("name") or model.get("model") or "?"


def model_activity(
    node: OllamaNode, before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[NewEvent]:
    """Return what the models in memory did between two /api/ps snapshots.

    A model that appears was loaded, one that disappears was unloaded, and one
    whose expires_at moved forward was used: Ollama resets the keep-alive timer
    when a request finishes.
    """
    old = {_model_key(m): m for m in before}
    new = {_model_key(m): m for m in after}
    events = []
    for name, model in new.items():
        if name not in old:
            events.append(_activity_event("model_loaded", node, model))
        elif str(model.get("expires_at", "")) > str(old[name].get("expires_at", "")):
            events.append(_activity_event("model_processing", node, model))
    events.extend(
        _activity_event("model_unloaded", node, model)
        for name, model in old.items()
        if name not in new
    )
    return events


def _activity_event(type: str, node: OllamaNode, model: dict[str, Any]) -> NewEvent:
    size_vram = model.get("size_vram") or 0
    vram_gb = round(size_vram / 2**30, 2)
    name = _model_key(model)
    messages = {
        "model_loaded": f"✅ Model loaded on {node.address}: {name}",
        "model_unloaded": f"💤 Model unloaded on {node.address}: {name}",
        "model_processing": (
            f"🔄 Processing on {node.address}: {name} (VRAM: {vram_gb:.2f}GB)"
        ),
    }
    return NewEvent(
        Stream.OLLAMA_ACTIVITY,
        type,
        messages[type],
        {
            "node": node.address,
            "node_url": node.url,
            "node_id": node.id,
            "model": name,
            "vram_gb": vram_gb,
            "size_vram": size_vram,
            "size": model.get("size") or 0,
        },
    )


def record_node_probes(
    results: Sequence[tuple[int, NodeProbe]],
    *,
    now: dt.datetime,
    round: int | None = None,
) -> int:
    """Store what a batch of probes found; return how many events it made.

    With a sharded round, a node another delivery of the batch already recorded
    in this round is left as it is: no probe is counted twice.
    """
    if not results:
        return 0
    events: list[NewEvent] = []
    history: list[NodeStatusChange] = []
    with transaction.atomic():
        nodes = OllamaNode.objects.select_for_update().in_bulk(
            sorted({node_id for node_id, _ in results})
        )
        reported = reported_outcomes(nodes.values(), now=now)
        for node_id, probe in results:
            node = nodes.get(node_id)
            if node is None:
                continue  # removed while it was being probed
            if round is not None:
                if node.probe_round >= round:
                    continue
                node.probe_round = round
            old_status = node.status
            # The first look at a node is its baseline: what it already holds was
            # not loaded just now.
            if probe.loaded_models is not None and node.last_seen is not None:
                events.extend(
                    model_activity(node, node.loaded_models, probe.loaded_models)
                )
            _apply_node_probe(node, probe, now)
            node.status, reason = _without_flapping(
                node, *next_node_status(node, probe, reported.get(node.address))
            )
            if node.status != old_status:
                history.append(_history(node, old_status, reason, now))
                events.append(
                    _status_event(
                        node,
                        old_status,
                        reason,
                        f"Node {node.url}: {old_status} → {node.status}",
                        latency_ms=_round(node.latency_ms),
                    )
                )
        save_fields(list(nodes.values()), NODE_PROBE_FIELDS)
        NodeStatusChange.objects.bulk_create(history)
        record_events(events, now=now)
    return len(events)


def reported_outcomes(
    nodes: Iterable[OllamaNode], *, now: dt.datetime
) -> dict[str, tuple[int, int]]:
    """Return {host:port: (requests, failed)} reported over SOLLOL_REPORTED_WINDOW."""
    addresses = [node.address for node in nodes]
    if not addresses or settings.SOLLOL_REPORTED_WINDOW <= 0:
        return {}
    since = now - dt.timedelta(seconds=settings.SOLLOL_REPORTED_WINDOW)
    rows = (
        RequestRecord.objects.filter(node__in=addresses, timestamp__gt=since)
        .values("node")
        .annotate(requests=Count("pk"), failed=Count("pk", filter=Q(ok=False)))
    )
    return {row["node"]: (row["requests"], row["failed"]) for row in rows}


def _history(
    node: OllamaNode, old_status: str, reason: str, now: dt.datetime
) -> NodeStatusChange:
    return NodeStatusChange(
        node=node, old_status=old_status, new_status=node.status, reason=reason, at=now
    )


def _status_event(
    node: OllamaNode, old_status: str, reason: str, message: str, **extra
) -> NewEvent:
    return _node_event(
        "status_change",
        node,
        message,
        old_status=old_status,
        new_status=node.status,
        reason=reason,
        **extra,
    )


def node_history(node: OllamaNode) -> list[dict[str, Any]]:
    limit = settings.SOLLOL_NODE_HISTORY
    return [
        {
            "at": change.at.timestamp(),
            "old_status": change.old_status,
            "new_status": change.new_status,
            "reason": change.reason,
        }
        for change in node.status_changes.all()[:limit]
    ]


def prune_node_history(*, keep: int) -> int:
    """Delete status changes beyond the newest `keep` of each node."""
    deleted = 0
    crowded = (
        NodeStatusChange.objects.values("node_id")
        .annotate(count=Count("id"))
        .filter(count__gt=keep)
    )
    for row in crowded:
        boundary = (
            NodeStatusChange.objects.filter(node_id=row["node_id"])
            .values_list("id", flat=True)[keep:][:1]
            .first()
        )
        if boundary is not None:
            deleted += NodeStatusChange.objects.filter(
                node_id=row["node_id"], id__lte=boundary
            ).delete()[0]
    return deleted


# --- RPC backends ---------------------------------------------------------------


def backend_data(backend: RpcBackend) -> dict[str, Any]:
    """Return the backend as the API shows it."""
    return {
        "id": backend.id,
        "address": backend.address,
        "host": backend.host,
        "port": backend.port,
        "status": backend.status,
        "source": backend.source,
        "protocol": backend.protocol,
        "device_count": len(backend.devices),
        "devices": backend.devices,
        "latency_ms": _round(backend.latency_ms),
        "consecutive_failures": backend.consecutive_failures,
        "last_error": backend.last_error,
        "last_seen": _timestamp(backend.last_seen),
        "last_probe": _timestamp(backend.last_probe),
    }


def _backend_event(type: str, backend: RpcBackend, message: str, **extra) -> NewEvent:
    payload = {
        "backend": backend.address,
        "backend_id": backend.id,
        "status": backend.status,
        **extra,
    }
    return NewEvent(Stream.BACKENDS, type, message, payload)


def ensure_backends(
    values: Iterable[str], *, source: str, now: dt.datetime
) -> list[RpcBackend]:
    """Make sure the backends exist; return the ones that were new."""
    wanted = _parse_all(values, addresses.backend_address, source)
    if not wanted:
        return []
    with transaction.atomic():
        return _create_missing(RpcBackend, "address", wanted, source=source, now=now)


def add_backend(value: str, *, now: dt.datetime) -> tuple[RpcBackend, bool]:
    """Add a backend by hand (API); return it and whether it was new."""
    address, _, _ = addresses.backend_address(value)
    created = ensure_backends([address], source=Source.API, now=now)
    if created:
        return created[0], True
    return RpcBackend.objects.get(address=address), False


def remove_backend(backend_id: int, *, now: dt.datetime) -> RpcBackend | None:
    """Forget a backend; return it, or None if there was none with that id.

    Raise StillConfigured for one the configuration would add back at once.
    """
    with transaction.atomic():
        backend = RpcBackend.objects.select_for_update().filter(pk=backend_id).first()
        if backend is None:
            return None
        if why := _still_configured(
            backend.address,
            backend.source,
            addresses.backend_address,
            "SOLLOL_RPC_BACKENDS",
            LOCALHOST_BACKEND,
        ):
            raise StillConfigured(why)
        event = _backend_event(
            "backend_disconnected",
            backend,
            f"🗑️ RPC backend removed: {backend.address}",
            removed=True,
        )
        backend.delete()
        _remember_removal(Removed.Kind.BACKEND, backend.address, now)
        record_events([event], now=now)
    return backend


BACKEND_PROBE_FIELDS = [
    "status",
    "protocol",
    "devices",
    "latency_ms",
    "consecutive_failures",
    "last_error",
    "last_seen",
    "last_probe",
    "session_at",
    "probe_round",
]


def _backend_transition(backend: RpcBackend, old_status: str) -> NewEvent | None:
    new_status = backend.status
    if new_status == old_status:
        return None
    if new_status == BackendStatus.ONLINE and old_status != BackendStatus.BUSY:
        devices = len(backend.devices)
        return _backend_event(
            "backend_connected",
            backend,
            f"🔗 RPC backend connected: {backend.address} "
            f"(protocol {backend.protocol or '?'}, {devices} device(s))",
            old_status=old_status,
            new_status=new_status,
        )
    if new_status == BackendStatus.OFFLINE and old_status != BackendStatus.UNKNOWN:
        return _backend_event(
            "backend_disconnected",
            backend,
            f"🔌 RPC backend disconnected: {backend.address}",
            old_status=old_status,
            new_status=new_status,
            reason=backend.last_error,
        )
    return _backend_event(
        "status_change",
        backend,
        f"RPC backend {backend.address}: {old_status} → {new_status}",
        old_status=old_status,
        new_status=new_status,
        reason=backend.last_error,
    )


QUEUE_FULL = (
    "serving another client, with its queue of waiting connections full: "
    "new connections time out until that client lets go"
)


def _record_connect_timeout(backend: RpcBackend) -> None:
    """Judge a TCP connect to backend that timed out: busy, or gone.

    ggml-rpc-server listens with a backlog of 1 and accept()s only when it is free.
    While it serves a client, Linux keeps two more connections waiting (ours too:
    closing them, with a FIN or an RST, does not take them out of the queue) and
    then drops every SYN, so our third probe's connect times out, and every one
    after it, for as long as that client holds the server: hours, for a llama.cpp
    client that keeps its RPC servers while it runs. From the port, that looks
    exactly like a host that stopped answering. What tells them apart is what the
    last probe that connected saw, and a probe that connects sees busy before the
    queue can be full of our own connections:

    - busy (the server left our connection in its queue, or left HELLO
      unanswered): its queue is full behind the client it serves. Busy, for as long
      as the timeouts last;
    - online (the server took our connection and closed it: it was free): for the
      queue to be full, a client must have taken it and two more must have queued
      within one probe interval. Nothing says it is busy, so each timeout counts as
      a failure, and after SOLLOL_PROBE_OFFLINE_AFTER of them in a row it is
      offline; until then it keeps its status, with the error;
    - anything else: offline at once, as after a refused connect.

    The trade-off: a host that dies while its server is serving a client stays busy
    until something refuses or answers there again, since a long session and a dead
    host give the same timeouts on this port; telling them apart would take
    evidence from elsewhere. A server process that dies is never in doubt: its port
    refuses at once, and the kernel resets the connections waiting in its queue.
    """
    if backend.status == BackendStatus.BUSY:
        backend.consecutive_failures = 0
        backend.last_error = QUEUE_FULL
        return
    backend.consecutive_failures += 1
    if (
        backend.status != BackendStatus.ONLINE
        or backend.consecutive_failures >= settings.SOLLOL_PROBE_OFFLINE_AFTER
    ):
        backend.status = BackendStatus.OFFLINE


def record_backend_probes(
    results: Sequence[tuple[int, RpcProbe, bool]],
    *,
    now: dt.datetime,
    round: int | None = None,
) -> int:
    """Store what a batch of backend probes found (id, probe, was a session).

    A probe that was only a TCP connect says free, busy or gone; it keeps what the
    last protocol session learned (protocol and devices stay as they were). A
    connect that timed out is judged by `_record_connect_timeout`.
    """
    if not results:
        return 0
    events: list[NewEvent] = []
    with transaction.atomic():
        backends = RpcBackend.objects.select_for_update().in_bulk(
            sorted({backend_id for backend_id, _, _ in results})
        )
        for backend_id, probe, session in results:
            backend = backends.get(backend_id)
            if backend is None:
                continue
            if round is not None:
                if backend.probe_round >= round:
                    continue
                backend.probe_round = round
            old_status = backend.status
            backend.last_probe = now
            backend.last_error = probe.error or ""
            if probe.latency_ms is not None:
                backend.latency_ms = probe.latency_ms
            if probe.status == BackendStatus.OFFLINE and probe.connect_timed_out:
                _record_connect_timeout(backend)
            elif probe.status == BackendStatus.OFFLINE:
                backend.consecutive_failures += 1
                backend.status = BackendStatus.OFFLINE
            else:
                backend.consecutive_failures = 0
                backend.last_seen = now
                if session:
                    backend.session_at = now
                    backend.status = probe.status
                    if probe.status == BackendStatus.ONLINE:
                        backend.protocol = probe.protocol or ""
                        backend.devices = [
                            {"index": d.index, "free": d.free, "total": d.total}
                            for d in probe.devices
                        ]
                elif backend.status in (BackendStatus.OFFLINE, BackendStatus.UNKNOWN):
                    # Alive again, but what it is now takes a session to tell.
                    backend.session_at = None
                elif backend.status in (BackendStatus.ONLINE, BackendStatus.BUSY):
                    # Free or serving someone: a bare connect tells that much.
                    backend.status = probe.status
            event = _backend_transition(backend, old_status)
            if event is not None:
                events.append(event)
        save_fields(list(backends.values()), BACKEND_PROBE_FIELDS)
        record_events(events, now=now)
    return len(events)


def record_rejections(
    nodes: Sequence[tuple[int, str]],
    backends: Sequence[tuple[int, str]],
    *,
    now: dt.datetime,
) -> int:
    """Mark nodes and backends the allow-list refused (id, reason); count events.

    They were not contacted: nothing about them is measured but the refusal.
    """
    events: list[NewEvent] = []
    history: list[NodeStatusChange] = []
    with transaction.atomic():
        found_nodes = OllamaNode.objects.select_for_update().in_bulk(
            sorted(node_id for node_id, _ in nodes)
        )
        for node_id, reason in nodes:
            node = found_nodes.get(node_id)
            if node is None:
                continue
            old_status, reason = node.status, f"not contacted: {reason}"
            node.status = node.probe_status = NodeStatus.REJECTED
            node.last_error, node.last_probe = reason, now
            node.consecutive_failures = node.consecutive_successes = 0
            if old_status != node.status:
                history.append(_history(node, old_status, reason, now))
                events.append(
                    _status_event(
                        node,
                        old_status,
                        reason,
                        f"Node {node.url}: {old_status} → rejected ({reason})",
                    )
                )
        save_fields(list(found_nodes.values()), NODE_PROBE_FIELDS)
        NodeStatusChange.objects.bulk_create(history)
        found_backends = RpcBackend.objects.select_for_update().in_bulk(
            sorted(backend_id for backend_id, _ in backends)
        )
        for backend_id, reason in backends:
            backend = found_backends.get(backend_id)
            if backend is None:
                continue
            old_status = backend.status
            backend.status = BackendStatus.REJECTED
            backend.last_error = f"not contacted: {reason}"
            backend.last_probe = now
            event = _backend_transition(backend, old_status)
            if event is not None:
                events.append(event)
        save_fields(list(found_backends.values()), BACKEND_PROBE_FIELDS)
        record_events(events, now=now)
    return len(events)


def needs_session(backend: RpcBackend, now: dt.datetime) -> bool:
    """Return whether the next probe of backend should open a protocol session."""
    if backend.session_at is None or backend.status in (
        BackendStatus.UNKNOWN,
        BackendStatus.REJECTED,
        BackendStatus.OFFLINE,  # costs no more than a connect, and tells what is back
    ):
        return True
    interval = dt.timedelta(seconds=settings.SOLLOL_RPC_SESSION_INTERVAL)
    return now - backend.session_at >= interval


# --- sources ----------------------------------------------------------------------


def sync_configured(*, now: dt.datetime) -> None:
    """Add the nodes and backends the operator configured (and localhost)."""
    ensure_nodes(settings.SOLLOL_OLLAMA_NODES, source=Source.CONFIG, now=now)
    ensure_backends(settings.SOLLOL_RPC_BACKENDS, source=Source.CONFIG, now=now)
    if settings.SOLLOL_DISCOVER_LOCALHOST:
        ensure_nodes([LOCALHOST_NODE], source=Source.LOCALHOST, now=now)
        ensure_backends([LOCALHOST_BACKEND], source=Source.LOCALHOST, now=now)


def _addresses(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)][:1000]
    return []


def ensure_reported(metadata: dict[str, Any], *, now: dt.datetime) -> None:
    """Add the nodes and backends an application reports in its metadata."""
    nodes = _addresses(metadata.get("nodes")) + _addresses(metadata.get("ollama_nodes"))
    backends = _addresses(metadata.get("rpc_backends"))
    if nodes:
        ensure_nodes(nodes, source=Source.APPLICATION, now=now)
    if backends:
        ensure_backends(backends, source=Source.APPLICATION, now=now)


def publish_node_samples(node_ids: list[int]) -> None:
    """Send the probed nodes' latest measurements to viewers that asked for them.

    Latency changes at every probe without being an event; the page's sparklines
    and "last seen" follow these samples instead of polling the node list.
    """
    if not node_ids:
        return
    rows = OllamaNode.objects.filter(id__in=node_ids).values_list(
        "id", "status", "latency_ms", "last_seen"
    )
    realtime.publish_samples(
        Stream.NODES,
        {
            "nodes": [
                [id, status, _round(latency), _timestamp(seen)]
                for id, status, latency, seen in rows
            ],
            "fields": ["id", "status", "latency_ms", "last_seen"],
            "at": timezone.now().timestamp(),
        },
    )


def begin_round() -> tuple[int, list[int], list[int]]:
    """Number a new sharded probe round; return it with every node and backend id."""
    with transaction.atomic():
        marker, _ = ProbeCycle.objects.select_for_update().get_or_create(
            name="round",
            defaults={
                "started_at": timezone.now(),
                "seconds": 0,
                "nodes": 0,
                "backends": 0,
                "changes": 0,
            },
        )
        # What the round now ending did not record: its batch's worker died, the
        # broker keeps the batch until its visibility timeout, and by then it has
        # expired (a pool child that dies is redelivered at once, within the
        # round). Those are in the round beginning now: one interval late.
        begun_before = marker.started_at
        marker.missed = sum(
            model.objects.filter(
                probe_round__lt=marker.round, created_at__lt=begun_before
            ).count()
            for model in (OllamaNode, RpcBackend)
        )
        if marker.round and marker.missed:
            logger.warning(
                "probe round %d left %d nodes and backends unprobed (a worker "
                "died with their batch?); they are in round %d",
                marker.round,
                marker.missed,
                marker.round + 1,
            )
        marker.round += 1
        marker.started_at = timezone.now()
        marker.save(update_fields=["round", "started_at", "missed"])
    nodes = list(OllamaNode.objects.order_by("id").values_list("id", flat=True))
    backends = list(RpcBackend.objects.order_by("id").values_list("id", flat=True))
    return marker.round, nodes, backends


def record_cycle(
    report: dict[str, Any], *, started_at: dt.datetime, round: int | None = None
) -> None:
    """Remember the last probe cycle; warn when probing cannot keep its interval.

    Sharded, a cycle is a whole round: each batch adds its nodes, backends and
    changes to its round's totals, and the round's time runs from its start to
    the end of its latest batch. A batch of an older round changes nothing.
    """
    if round is None:
        ProbeCycle.objects.update_or_create(
            name="network",
            defaults={
                "started_at": started_at,
                "seconds": report["seconds"],
                "nodes": report["nodes"],
                "backends": report["backends"],
                "changes": report["changes"],
                "round": 0,
            },
        )
        seconds = report["seconds"]
        nodes, backends = report["nodes"], report["backends"]
    else:
        with transaction.atomic():
            marker = ProbeCycle.objects.filter(name="round").first()
            if marker is None or marker.round != round:
                return  # a straggler of an older round
            row, _ = ProbeCycle.objects.select_for_update().get_or_create(
                name="network",
                defaults={
                    "started_at": marker.started_at,
                    "seconds": 0,
                    "nodes": 0,
                    "backends": 0,
                    "changes": 0,
                },
            )
            if row.round != round:
                row.round = round
                row.started_at = marker.started_at
                row.nodes = row.backends = row.changes = 0
                row.seconds = 0.0
            row.nodes += report["nodes"]
            row.backends += report["backends"]
            row.changes += report["changes"]
            elapsed = (timezone.now() - marker.started_at).total_seconds()
            row.seconds = max(row.seconds, elapsed)  # batches end in any order
            row.save()
        seconds, nodes, backends = row.seconds, row.nodes, row.backends
    if seconds > settings.SOLLOL_PROBE_INTERVAL:
        logger.warning(
            "probing %d nodes and %d backends took %.1fs, longer than the %.1fs "
            "interval",
            nodes,
            backends,
            seconds,
            settings.SOLLOL_PROBE_INTERVAL,
        )

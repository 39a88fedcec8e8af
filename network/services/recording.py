"""What probes found, stored: a batch of results in one transaction, with its events.

The status each result moves a node or backend to is decided by network.status;
this applies it to the rows, keeps each node's status history, and writes the
events (network.services.events) last in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from activity import history as series
from activity.history import Point
from activity.models import RequestRecord
from activity.services import NewEvent, record_events
from core import addresses, realtime
from core.db import save_fields
from core.jsonio import PayloadError, epoch, rounded
from network import gpus
from network.choices import NODE_STREAM, BackendStatus, NodeStatus
from network.history import backend_point, node_point
from network.models import NodeStatusChange, OllamaNode, RpcBackend
from network.probes import NodeProbe
from network.services.events import (
    backend_transition,
    model_activity,
    node_event,
    status_event,
)
from network.status import (
    BACKEND_DOWN,
    models_known,
    next_node_status,
    node_usable,
    only_guessed,
    without_flapping,
)

if TYPE_CHECKING:
    from network.rpc import RpcProbe

LATENCY_SMOOTHING = 0.2  # weight of the newest sample in the moving average


NODE_PROBE_FIELDS = (
    "status",
    "probe_status",
    "flap_score",
    "version",
    "latency_ms",
    "latency_avg_ms",
    "consecutive_failures",
    "consecutive_successes",
    "last_error",
    "last_seen",
    "last_probe",
    "probe_round",
    "loaded_models_failed",
)
# Written only when a probe changed them: encoding every node's models as JSON
# at every probe cost the writer more than all the other fields (bench/RESULTS.md).
LOADED_FIELDS = ("loaded_models", "vram_used_bytes")
DISK_FIELDS = ("disk_models", "tags_checked_at")


def _apply_node_probe(
    node: OllamaNode, probe: NodeProbe, now: dt.datetime
) -> tuple[str, ...]:
    """Apply a probe to its node; return the fields to write (NODE_PROBE_FIELDS and
    the models' fields where the probe changed them)."""
    fields = NODE_PROBE_FIELDS
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
    # Known again once read; unknown while asking fails; a probe that did not ask
    # (a server whose models are read now and then) leaves it as it was.
    if probe.models_failed:
        node.loaded_models_failed = True
    elif probe.loaded_models is not None:
        node.loaded_models_failed = False
    if probe.loaded_models is not None and probe.loaded_models != node.loaded_models:
        node.loaded_models = probe.loaded_models
        node.vram_used_bytes = sum(
            m.get("size_vram", 0) for m in probe.loaded_models if m.get("size_vram")
        )
        fields += LOADED_FIELDS
    if probe.disk_models is not None:
        node.disk_models = probe.disk_models
        node.tags_checked_at = now
        fields += DISK_FIELDS
    if probe.kind and not node.kind:  # what a node of no known kind turned out to be
        node.kind = probe.kind
        fields += ("kind",)
    if probe.gpus is not None:
        node.gpus = probe.gpus
        fields += ("gpus",)
    if probe.gpu_error:
        node.last_error = "; ".join(filter(None, (node.last_error, probe.gpu_error)))
    if probe.serving is not None:
        serving = {
            **{key: node.serving[key] for key in KEPT if key in node.serving},
            **probe.serving,
        }
        node.serving, node.counters = serving_with_rates(
            serving, node.counters, probe.counters, now
        )
        fields += SERVING_FIELDS
    return fields


SERVING_FIELDS = ("serving", "counters")
# What a server is rather than does, read only with its models (network.servers):
# kept from that probe until the next such one says otherwise.
KEPT = ("slots_total", "context_per_slot")


def vram_events(node: OllamaNode, before: list, after: list) -> list[NewEvent]:
    """vram_nearly_full when a GPU's memory passes NEARLY_FULL, vram_recovered when
    it is below ROOM_AGAIN again (between the two it stays as it was, marked
    `nearly_full` in its reading: no flapping)."""
    was = {gpu.get("uuid"): gpu for gpu in before or []}
    events = []
    for gpu in after:
        full_before = bool(was.get(gpu.get("uuid"), {}).get("nearly_full"))
        full = gpus.nearly_full(gpu) or (
            full_before and gpus.nearly_full(gpu, gpus.ROOM_AGAIN)
        )
        gpu["nearly_full"] = full
        if full == full_before:
            continue
        total, used = gpu.get("memory_total"), gpu.get("memory_used")
        figures = {
            "gpu": gpu.get("index"),
            "gpu_name": gpu.get("name", ""),
            "memory_used": used,
            "memory_total": total,
        }
        if full:
            message = (
                f"🟥 VRAM nearly full on {node.url} GPU {gpu.get('index')}: "
                f"{used / total:.0%} of {total / 2**30:.1f} GB"
            )
            events.append(node_event("vram_nearly_full", node, message, **figures))
        else:
            message = f"✅ VRAM has room again on {node.url} GPU {gpu.get('index')}"
            events.append(node_event("vram_recovered", node, message, **figures))
    return events


def saturated(serving: dict) -> bool:
    """Whether a server says every slot is busy and requests wait (without slots,
    as vLLM: requests wait, its batch is full)."""
    waiting = serving.get("requests_waiting") or 0
    total, busy = serving.get("slots_total"), serving.get("slots_busy")
    if not waiting:
        return False
    return total is None or busy is None or busy >= total


def saturation_event(node: OllamaNode) -> NewEvent:
    serving = node.serving
    figures = {
        key: serving.get(key)
        for key in ("slots_busy", "slots_total", "requests_running", "requests_waiting")
        if serving.get(key) is not None
    }
    if saturated(serving):
        return node_event(
            "node_saturated",
            node,
            f"🔥 Node {node.url} is saturated: every slot busy, "
            f"{serving.get('requests_waiting')} waiting",
            **figures,
        )
    return node_event(
        "node_recovered", node, f"✅ Node {node.url} has room again", **figures
    )


RATES = (
    ("prompt_tokens", "prompt_tokens_per_second"),
    ("generated_tokens", "generation_tokens_per_second"),
)


def serving_with_rates(
    serving: dict, before: dict, counters: dict | None, now: dt.datetime
) -> tuple[dict, dict]:
    """Return what a server says of its work with its token rates since the last
    probe, and the counters to keep for the next.

    A counter below its last value means the server restarted (its counters
    began again): no rate this time (not a negative one), and `restarted` says so.
    A probe that could not read the counters (its /metrics timed out) keeps the
    last ones read: the next that can gives the rate over the whole time since,
    and work done in between is not lost from it.
    """
    serving = dict(serving)
    if counters is None:
        return serving, before
    at = now.timestamp()
    kept = {**counters, "at": at}
    elapsed = at - before.get("at", at)
    for counter, rate in RATES:
        new, old = counters.get(counter), before.get(counter)
        if new is None or old is None or elapsed <= 0:
            continue
        if new < old:
            serving["restarted"] = True
            continue
        serving[rate] = round((new - old) / elapsed, 2)
    return serving, kept


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
    points: list[Point] = []
    probed: dict[tuple[str, ...], list[OllamaNode]] = {}
    with transaction.atomic():
        # Models on disk are only replaced, never read here: not decoded either.
        nodes = (
            OllamaNode.objects.select_for_update()
            .defer("disk_models")
            .in_bulk(sorted({node_id for node_id, _ in results}))
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
            was_saturated = saturated(node.serving)
            gpus_before = node.gpus
            probed.setdefault(_apply_node_probe(node, probe, now), []).append(node)
            if probe.gpus is not None:
                events.extend(vram_events(node, gpus_before, probe.gpus))
            if probe.serving is not None and saturated(node.serving) != was_saturated:
                events.append(saturation_event(node))
            node.status, reason = without_flapping(
                node, *next_node_status(node, probe, reported.get(node.address))
            )
            if node.status != old_status:
                history.append(_history(node, old_status, reason, now))
                events.append(
                    status_event(
                        node,
                        old_status,
                        reason,
                        f"Node {node.url}: {old_status} → {node.status}",
                        latency_ms=rounded(node.latency_ms),
                    )
                )
            points.append(
                node_point(
                    node,
                    probe.latency_ms if probe.answered else None,
                    models_read=probe.loaded_models is not None,
                )
            )
        for fields, group in probed.items():
            save_fields(group, fields)
        NodeStatusChange.objects.bulk_create(history)
        series.record("node", points, at=now)
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


BACKEND_PROBE_FIELDS = [
    "coordinator",
    "coordinator_source",
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


def declared_coordinators() -> dict[str, str]:
    """{backend host:port: coordinator host:port} as the operator declared them."""
    pairs = {}
    for entry in settings.SOLLOL_RPC_COORDINATORS:
        backend, separator, coordinator = entry.strip().partition("=")
        if separator and backend.strip() and coordinator.strip():
            pairs[backend.strip().lower()] = (
                coordinator.strip().lower().removeprefix("http://").rstrip("/")
            )
    return pairs


def serving_coordinators() -> list[str]:
    """The llama.cpp nodes (host:port) that answer and serve a model now."""
    return [
        addresses.host_port(host, port)
        for host, port, state, probe, loaded in OllamaNode.objects.filter(
            kind="llamacpp"
        ).values_list("host", "port", "status", "probe_status", "loaded_models")
        if node_usable(state, probe) and loaded
    ]


def attribute(backend: RpcBackend, declared: dict, coordinators: list[str]) -> None:
    """Say which coordinator holds the backend.

    Declared: as the operator says. Else a backend held busy (a ggml-rpc-server
    serves one client) while exactly one llama.cpp node serves (one on its own
    host, if there are several) is that node's; with more, the last answer
    stands until the operator declares it. A free backend is nobody's; a lost
    one keeps whose it was, to say who lost it.
    """
    named = declared.get(backend.address.lower())
    if named:
        backend.coordinator, backend.coordinator_source = named, "declared"
        return
    if backend.status == BackendStatus.BUSY:
        local = [c for c in coordinators if c.rsplit(":", 1)[0] == backend.host]
        candidates = local or coordinators
        if len(candidates) == 1:
            backend.coordinator, backend.coordinator_source = candidates[0], "inferred"
        elif backend.coordinator not in candidates:
            backend.coordinator, backend.coordinator_source = "", ""
    elif backend.status != BackendStatus.OFFLINE:
        backend.coordinator, backend.coordinator_source = "", ""


def _backend_lost(backend: RpcBackend, coordinator: str) -> list[NewEvent]:
    """The coordinator's side of its backend's loss: an event on the nodes stream."""
    try:
        host, port = addresses.split_host_port(coordinator)
    except PayloadError:
        return []
    node = OllamaNode.objects.filter(host=host, port=port).first()
    if node is None:
        return []
    return [
        node_event(
            "rpc_backend_lost",
            node,
            f"🔌 {node.url} lost its RPC backend {backend.address}",
            backend=backend.address,
            reason=backend.last_error,
        )
    ]


QUEUE_FULL = (
    "serving another client, with its queue of waiting connections full: "
    "new connections time out until that client lets go"
)


def _record_connect_timeout(
    backend: RpcBackend, now: dt.datetime, serving: set[str]
) -> None:
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

    A long session and a dead host give the same timeouts on this port, so a busy
    backend needs proof of life from elsewhere: the llama.cpp coordinator that
    holds it (declared, or inferred) answering and serving a model. With that it
    stays busy for as long as the session lasts; without it, once nothing has
    answered there for SOLLOL_RPC_BUSY_MAX, it is `unreachable`, saying why, until
    it answers or refuses again. A server process that dies is never in doubt: its
    port refuses at once, and the kernel resets the connections waiting in its queue.
    """
    if backend.status in (BackendStatus.BUSY, BackendStatus.UNREACHABLE):
        backend.consecutive_failures = 0
        if backend.coordinator and backend.coordinator in serving:
            backend.status = BackendStatus.BUSY
            backend.last_error = QUEUE_FULL
            return
        silent = (now - (backend.last_seen or backend.created_at)).total_seconds()
        if silent < settings.SOLLOL_RPC_BUSY_MAX:
            backend.last_error = QUEUE_FULL
            return
        backend.status = BackendStatus.UNREACHABLE
        backend.last_error = (
            f"busy, then nothing answered for {silent:.0f} s and no coordinator "
            "serving with it says it is in use: its host may be gone (a known "
            "coordinator, SOLLOL_RPC_COORDINATORS, keeps a long session busy)"
        )
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
    points: list[Point] = []
    declared = declared_coordinators()
    with transaction.atomic():
        backends = RpcBackend.objects.select_for_update().in_bulk(
            sorted({backend_id for backend_id, _, _ in results})
        )
        coordinators = serving_coordinators()
        serving = {*coordinators}
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
                _record_connect_timeout(backend, now, serving)
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
                elif backend.status in (
                    BackendStatus.OFFLINE,
                    BackendStatus.UNREACHABLE,
                    BackendStatus.UNKNOWN,
                    BackendStatus.NOT_FOUND,
                ):
                    # Alive again, but what it is now takes a session to tell.
                    backend.session_at = None
                elif backend.status in (BackendStatus.ONLINE, BackendStatus.BUSY):
                    # Free or serving someone: a bare connect tells that much.
                    backend.status = probe.status
            if backend.status == BackendStatus.OFFLINE and only_guessed(backend):
                backend.status = BackendStatus.NOT_FOUND
                backend.last_error = (
                    f"nothing answers at {backend.address}, where the dashboard "
                    "looked because SOLLOL_DISCOVER_LOCALHOST is true; add your "
                    "backends with SOLLOL_RPC_BACKENDS or POST /api/network/backends"
                )
            held_by = backend.coordinator
            attribute(backend, declared, coordinators)
            event = backend_transition(backend, old_status)
            if event is not None:
                if held_by or backend.coordinator:
                    event.payload["coordinator"] = held_by or backend.coordinator
                events.append(event)
            if (
                held_by
                and backend.status in BACKEND_DOWN
                and old_status not in BACKEND_DOWN
            ):
                events.extend(_backend_lost(backend, held_by))
            points.append(
                backend_point(
                    backend,
                    probe.latency_ms if backend.status not in BACKEND_DOWN else None,
                    devices_read=session and probe.status == BackendStatus.ONLINE,
                )
            )
        save_fields(list(backends.values()), BACKEND_PROBE_FIELDS)
        series.record("backend", points, at=now)
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
                    status_event(
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
            event = backend_transition(backend, old_status)
            if event is not None:
                events.append(event)
        save_fields(list(found_backends.values()), BACKEND_PROBE_FIELDS)
        record_events(events, now=now)
    return len(events)


# Positions are kept: a field a client does not know comes last.
# serving: what a server other than Ollama says of its work (null for Ollama);
# gpus: what the node's GPU exporter says ([] without one).
SAMPLE_FIELDS = [
    "id",
    "status",
    "latency_ms",
    "last_seen",
    "usable",
    "serving",
    "gpus",
    "loaded_models_known",
]


def publish_node_samples(node_ids: list[int]) -> None:
    """Send the probed nodes' latest measurements to viewers that asked for them.

    Latency changes at every probe without being an event; the page's sparklines
    and "last seen" follow these samples instead of polling the node list, and a
    flapping node's `usable` (which makes no event) too.
    """
    if not node_ids:
        return
    rows = OllamaNode.objects.filter(id__in=node_ids).values_list(
        "id",
        "status",
        "probe_status",
        "latency_ms",
        "last_seen",
        "serving",
        "gpus",
        "loaded_models_failed",
    )
    realtime.publish_samples(
        NODE_STREAM,
        {
            "nodes": [
                [
                    id,
                    state,
                    rounded(latency),
                    epoch(seen),
                    node_usable(state, probe),
                    serving or None,
                    gpus,
                    models_known(node_usable(state, probe), failed),
                ]
                for id, state, probe, latency, seen, serving, gpus, failed in rows
            ],
            "fields": SAMPLE_FIELDS,
            "at": timezone.now().timestamp(),
        },
    )


def loaded_model_sizes(
    nodes: set[str],
) -> dict[tuple[str, str], tuple[int | None, int | None]]:
    """Return {(host:port, model): (size_vram, size)} from the nodes' last probes.

    Registered with activity.metrics, which names nodes as routers report them
    (host:port) and knows no node itself.
    """
    hosts = set()
    for node in nodes:
        try:
            hosts.add(addresses.split_host_port(node)[0])
        except PayloadError:
            continue
    found = {}
    for host, port, loaded in OllamaNode.objects.filter(host__in=hosts).values_list(
        "host", "port", "loaded_models"
    ):
        address = addresses.host_port(host, port)
        if address not in nodes:
            continue
        for model in loaded or []:
            name = model.get("name") or model.get("model")
            found[(address, name)] = (model.get("size_vram"), model.get("size"))
    return found

"""The network's status rules: facts in, a status and a reason in words out; no I/O.

"Usable" is decided here and only here: a node is usable when it answered its last
probe (healthy or degraded; a flapping node, when its latest probe answered), so
it can take work and what it holds in memory is known. A backend is usable when
it accepted its last probe (online, or busy serving another client). The API,
the events, /api/prometheus, the fleet's health and the page all take this verdict.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q

from network.choices import BackendStatus, NodeStatus, Source
from network.models import OllamaNode, RpcBackend

if TYPE_CHECKING:
    from network.probes import NodeProbe

NODE_ANSWERING = frozenset({NodeStatus.HEALTHY, NodeStatus.DEGRADED})
BACKEND_ANSWERING = frozenset({BackendStatus.ONLINE, BackendStatus.BUSY})
# Down: refused or timed out (offline), or busy too long with no proof of life.
BACKEND_DOWN = (BackendStatus.OFFLINE, BackendStatus.UNREACHABLE)


def node_usable(status: str, probe_status: str) -> bool:
    """Return whether a node in status answered its last probe (see the module)."""
    if status == NodeStatus.FLAPPING:
        return probe_status in NODE_ANSWERING
    return status in NODE_ANSWERING


def models_known(usable: bool, loaded_models_failed: bool) -> bool:
    """Whether a node's loaded models are what it holds now: it answered its last
    probe, and that probe read them (a node whose /api/ps fails while /api/version
    answers is usable, but what it holds is not known)."""
    return usable and not loaded_models_failed


def usable_nodes() -> Q:
    """Return node_usable as a filter, for counting in the database."""
    return Q(status__in=NODE_ANSWERING) | Q(
        status=NodeStatus.FLAPPING, probe_status__in=NODE_ANSWERING
    )


def backend_usable(status: str) -> bool:
    """Return whether a backend in status accepted its last probe."""
    return status in BACKEND_ANSWERING


ADD_NODES = (
    "add your nodes with SOLLOL_OLLAMA_NODES (host:port, comma-separated) or "
    "POST /api/network/nodes"
)


def only_guessed(target: OllamaNode | RpcBackend) -> bool:
    """Whether a node or backend is only the localhost guess and never answered:
    "not found", not down (a first run without Ollama is not a critical fleet).
    Once it has answered, failing is being down, as for any other."""
    return target.source == Source.LOCALHOST and target.last_seen is None


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
        if only_guessed(node):
            return NodeStatus.NOT_FOUND, (
                f"nothing answers at {node.url}, where the dashboard looked "
                "because SOLLOL_DISCOVER_LOCALHOST is true; " + ADD_NODES
            )
        if node.consecutive_failures >= settings.SOLLOL_PROBE_OFFLINE_AFTER:
            return NodeStatus.OFFLINE, (
                f"{node.consecutive_failures} probes failed in a row: {probe.error}"
            )
        return NodeStatus.UNHEALTHY, probe.error
    if probe.unauthorized:
        # It is there and answers, to someone else: not down, and no use to us.
        return NodeStatus.UNAUTHORIZED, probe.error
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


def without_flapping(node: OllamaNode, status: str, reason: str) -> tuple[str, str]:
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


def needs_session(backend: RpcBackend, now: dt.datetime) -> bool:
    """Return whether the next probe of backend should open a protocol session."""
    if backend.session_at is None or backend.status in (
        BackendStatus.UNKNOWN,
        BackendStatus.REJECTED,
        BackendStatus.OFFLINE,  # costs no more than a connect, and tells what is back
        BackendStatus.UNREACHABLE,
        BackendStatus.NOT_FOUND,
    ):
        return True
    interval = dt.timedelta(seconds=settings.SOLLOL_RPC_SESSION_INTERVAL)
    return now - backend.session_at >= interval

"""The fleet's overall health, in one answer with its reason in words."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count

from network.choices import BackendStatus, NodeStatus
from network.models import OllamaNode, RpcBackend
from network.services.rounds import last_cycle
from network.status import (
    ADD_NODES,
    BACKEND_DOWN,
    backend_usable,
    node_usable,
)

# What each status counts as (a node or backend in none of these counts in total).
NODE_COUNTED = {
    NodeStatus.HEALTHY: "healthy",
    NodeStatus.DEGRADED: "degraded",
    NodeStatus.UNHEALTHY: "down",
    NodeStatus.OFFLINE: "down",
    NodeStatus.UNKNOWN: "unknown",
    NodeStatus.REJECTED: "rejected",
    NodeStatus.FLAPPING: "flapping",
    NodeStatus.UNAUTHORIZED: "unauthorized",
    NodeStatus.NOT_FOUND: "not_found",
}
BACKEND_COUNTED = {
    BackendStatus.ONLINE: "online",
    BackendStatus.BUSY: "busy",
    **dict.fromkeys(BACKEND_DOWN, "offline"),
    BackendStatus.INCOMPATIBLE: "incompatible",
    BackendStatus.REJECTED: "rejected",
    BackendStatus.UNKNOWN: "unknown",
    BackendStatus.NOT_FOUND: "not_found",
}


def _node_counts() -> dict[str, int]:
    """Nodes by what their status counts as, and how many are usable: one grouped
    query (ten filtered counts took a third of an alert round to build)."""
    counts = dict.fromkeys(["total", "usable", *NODE_COUNTED.values()], 0)
    grouped = (
        OllamaNode.objects.order_by()
        .values_list("status", "probe_status")
        .annotate(count=Count("id"))
    )
    for status, probe_status, count in grouped:
        counts["total"] += count
        if status in NODE_COUNTED:
            counts[NODE_COUNTED[status]] += count
        if node_usable(status, probe_status):
            counts["usable"] += count
    return counts


def _backend_counts() -> dict[str, int]:
    counts = dict.fromkeys(["total", "usable", *BACKEND_COUNTED.values()], 0)
    grouped = (
        RpcBackend.objects.order_by().values_list("status").annotate(count=Count("id"))
    )
    for status, count in grouped:
        counts["total"] += count
        if status in BACKEND_COUNTED:
            counts[BACKEND_COUNTED[status]] += count
        if backend_usable(status):
            counts["usable"] += count
    return counts


def network_health(*, now: dt.datetime) -> dict[str, Any]:
    """Return healthy / degraded / critical / unknown, with counts and reasons.

    critical: nodes are known and none is usable (network.status), or there are
    only RPC backends and none is usable;
    degraded: some node or backend is not healthy/online; unknown: nothing is
    known or nothing has been probed yet.
    """
    nodes, backends = _node_counts(), _backend_counts()
    reasons = []
    if nodes["down"]:
        reasons.append(f"{nodes['down']} of {nodes['total']} nodes are down")
    if nodes["degraded"]:
        reasons.append(f"{nodes['degraded']} nodes are degraded")
    if nodes["flapping"]:
        reasons.append(f"{nodes['flapping']} nodes keep going up and down")
    if nodes["unauthorized"]:
        reasons.append(
            f"{nodes['unauthorized']} nodes refuse the dashboard (HTTP 401/403): "
            "give it their credentials"
        )
    if backends["offline"]:
        reasons.append(
            f"{backends['offline']} of {backends['total']} RPC backends are "
            "offline or unreachable"
        )
    if backends["incompatible"]:
        reasons.append(
            f"{backends['incompatible']} RPC backends speak another protocol"
        )
    # Not a health problem of the fleet, but the operator should hear of it.
    rejected = nodes["rejected"] + backends["rejected"]
    notes = (
        [
            f"{rejected} nodes or backends reported by apps or the API are outside "
            "SOLLOL_ALLOWED_NODE_CIDRS and were not contacted"
        ]
        if rejected
        else []
    )
    # Probed and meant to be there: neither rejected nor only the localhost guess.
    probed = nodes["total"] - nodes["unknown"] - nodes["rejected"] - nodes["not_found"]
    backends_probed = (
        backends["total"]
        - backends["unknown"]
        - backends["rejected"]
        - backends["not_found"]
    )
    if probed and not nodes["usable"]:
        status = "critical"
        reasons.insert(0, "no node is usable")
    elif not probed and backends_probed and not backends["usable"]:
        # A fleet of RPC backends only, and none of them answers.
        status = "critical"
        reasons.insert(0, "no RPC backend is usable")
    elif not probed and not backends["usable"]:
        status = "unknown"
        if nodes["not_found"] and not nodes["unknown"]:
            reasons.append(
                "no Ollama answers on this machine, the only place the dashboard "
                "looked; " + ADD_NODES
            )
        else:
            reasons.append(
                "no node has been probed yet" if nodes["total"] else "no nodes known"
            )
    elif reasons:
        status = "degraded"
    else:
        status = "healthy"
    return {
        "timestamp": now.timestamp(),
        "status": status,
        "reason": "; ".join(reasons),
        "reasons": reasons,
        "notes": notes,
        "nodes_total": nodes["total"],
        "nodes_healthy": nodes["healthy"],
        "nodes_degraded": nodes["degraded"],
        "nodes_down": nodes["down"],
        "nodes_rejected": nodes["rejected"],
        "nodes_flapping": nodes["flapping"],
        "nodes_unauthorized": nodes["unauthorized"],
        "nodes_not_found": nodes["not_found"],
        "backends_total": backends["total"],
        "backends_online": backends["online"],
        "backends_busy": backends["busy"],
        "backends_offline": backends["offline"],
        "backends_rejected": backends["rejected"],
        "probe_cycle": last_cycle(),
    }

"""The fleet's overall health, in one answer with its reason in words."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, Q

from applications.models import Application
from network.choices import BackendStatus, NodeStatus
from network.models import OllamaNode, ProbeCycle, RpcBackend


def network_health(*, now: dt.datetime) -> dict[str, Any]:
    """Return healthy / degraded / critical / unknown, with counts and reasons.

    critical: nodes are known and none is usable (healthy or degraded), or there
    are only RPC backends and none is usable (online or busy);
    degraded: some node or backend is not healthy/online; unknown: nothing is
    known or nothing has been probed yet.
    """
    nodes = OllamaNode.objects.aggregate(
        total=Count("id"),
        healthy=Count("id", filter=Q(status=NodeStatus.HEALTHY)),
        degraded=Count("id", filter=Q(status=NodeStatus.DEGRADED)),
        down=Count(
            "id", filter=Q(status__in=[NodeStatus.UNHEALTHY, NodeStatus.OFFLINE])
        ),
        unknown=Count("id", filter=Q(status=NodeStatus.UNKNOWN)),
        rejected=Count("id", filter=Q(status=NodeStatus.REJECTED)),
        flapping=Count("id", filter=Q(status=NodeStatus.FLAPPING)),
    )
    backends = RpcBackend.objects.aggregate(
        total=Count("id"),
        online=Count("id", filter=Q(status=BackendStatus.ONLINE)),
        busy=Count("id", filter=Q(status=BackendStatus.BUSY)),
        offline=Count("id", filter=Q(status=BackendStatus.OFFLINE)),
        incompatible=Count("id", filter=Q(status=BackendStatus.INCOMPATIBLE)),
        rejected=Count("id", filter=Q(status=BackendStatus.REJECTED)),
        unknown=Count("id", filter=Q(status=BackendStatus.UNKNOWN)),
    )
    reasons = []
    if nodes["down"]:
        reasons.append(f"{nodes['down']} of {nodes['total']} nodes are down")
    if nodes["degraded"]:
        reasons.append(f"{nodes['degraded']} nodes are degraded")
    if nodes["flapping"]:
        reasons.append(f"{nodes['flapping']} nodes keep going up and down")
    if backends["offline"]:
        reasons.append(
            f"{backends['offline']} of {backends['total']} RPC backends are offline"
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
    probed = nodes["total"] - nodes["unknown"] - nodes["rejected"]
    if probed and not (nodes["healthy"] or nodes["degraded"] or nodes["flapping"]):
        status = "critical"
        reasons.insert(0, "no node is usable")
    elif (
        not probed
        and backends["total"] - backends["unknown"] - backends["rejected"]
        and not (backends["online"] or backends["busy"])
    ):
        # A fleet of RPC backends only, and none of them answers.
        status = "critical"
        reasons.insert(0, "no RPC backend is usable")
    elif not probed and not (backends["online"] or backends["busy"]):
        status = "unknown"
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
        "backends_total": backends["total"],
        "backends_online": backends["online"],
        "backends_busy": backends["busy"],
        "backends_offline": backends["offline"],
        "backends_rejected": backends["rejected"],
        "applications_active": Application.objects.filter(stale_after__gt=now).count(),
        "probe_cycle": _last_cycle(),
    }


def _last_cycle() -> dict[str, Any] | None:
    cycle = ProbeCycle.objects.filter(name="network").first()
    if cycle is None:
        return None
    return {
        "started_at": cycle.started_at.timestamp(),
        "seconds": cycle.seconds,
        "nodes": cycle.nodes,
        "backends": cycle.backends,
        "changes": cycle.changes,
        # Sharded probing: the numbered round these totals are for, and how many
        # nodes and backends the last finished round left unprobed (a worker died
        # with their batch; they were probed a round later).
        "round": cycle.round or None,
        "missed": _missed() if cycle.round else None,
    }


def _missed() -> dict[str, int] | None:
    marker = ProbeCycle.objects.filter(name="round").first()
    if marker is None or marker.round < 2:
        return None
    return {"round": marker.round - 1, "count": marker.missed}

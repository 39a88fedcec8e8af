"""The network's series (activity/history.py): each node, each backend, the fleet.

A node's point is what its probe found: whether it was usable afterwards, the
probe's latency (none when it did not answer), the VRAM its loaded models hold
and how many are loaded (none when the probe did not read them). A backend's:
usable, connect latency, device memory in use (read in its protocol sessions
only). The fleet is measured every SOLLOL_HISTORY_INTERVAL: usable nodes of all
known, their mean latency and their VRAM, and whether the fleet could serve
(not critical).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Avg, Count, Sum

from activity import history
from activity.history import Point, Series
from network.health import network_health
from network.models import OllamaNode, RpcBackend
from network.status import backend_usable, node_usable, usable_nodes


def _probe_interval() -> float:
    return settings.SOLLOL_PROBE_INTERVAL


def _history_interval() -> float:
    return settings.SOLLOL_HISTORY_INTERVAL


def node_point(node: OllamaNode, latency_ms: float | None, models_read: bool) -> Point:
    """What a probe found; VRAM and loaded models only when it read them (a node
    that did not answer has a last-known VRAM, not a measured one)."""
    return Point(
        subject=node.id,
        up=node_usable(node.status, node.probe_status),
        value=latency_ms,
        gauge=node.vram_used_bytes if models_read else None,
        count=len(node.loaded_models or ()) if models_read else None,
    )


def backend_point(
    backend: RpcBackend, latency_ms: float | None, devices_read: bool
) -> Point:
    """What a probe found; device memory only from a protocol session (a bare
    connect reads none)."""
    devices = (backend.devices or []) if devices_read else []
    return Point(
        subject=backend.id,
        up=backend_usable(backend.status),
        value=latency_ms,
        gauge=sum(max(0, d.get("total", 0) - d.get("free", 0)) for d in devices)
        if devices
        else None,
        count=len(devices) if devices_read else None,
    )


def fleet_points(now: dt.datetime) -> list[Point]:
    health = network_health(now=now)
    if not health["nodes_total"] and not health["backends_total"]:
        return []  # nothing known: nothing to measure
    usable = OllamaNode.objects.filter(usable_nodes()).aggregate(
        nodes=Count("id"), latency=Avg("latency_ms"), vram=Sum("vram_used_bytes")
    )
    return [
        Point(
            up=health["status"] in ("healthy", "degraded"),
            value=usable["latency"],
            gauge=usable["vram"] or 0,
            count=usable["nodes"],
            total=health["nodes_total"],
        )
    ]


NODE = history.register(
    Series(
        "node", 1, _probe_interval, up="usable", value="latency_ms",
        gauge="vram_used_bytes", count="loaded_models",
    )
)  # fmt: skip
BACKEND = history.register(
    Series(
        "backend", 2, _probe_interval, up="usable", value="latency_ms",
        gauge="memory_used_bytes", count="devices",
    )
)  # fmt: skip
FLEET = history.register(
    Series(
        "fleet", 3, _history_interval, up="serving", value="latency_ms",
        gauge="vram_used_bytes", count="nodes_usable", total="nodes_total",
        whole=True, sample=fleet_points,
    )
)  # fmt: skip

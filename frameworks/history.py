"""Ray's and Dask's series (activity/history.py): one point each collection.

Whether the dashboard answered (active), mean CPU use, memory in use, the nodes
(Ray) or workers (Dask) alive and the tasks running (Ray) or processing (Dask).
A framework that is not configured is not measured.
"""

from __future__ import annotations

import datetime as dt
import math

from django.conf import settings

from activity import history
from activity.history import Point, Series
from frameworks.choices import FrameworkStatus, Kind


def _interval() -> float:
    return settings.SOLLOL_FRAMEWORK_INTERVAL


def _whole(value: object, limit: int = 2**31 - 1) -> int | None:
    """A count (or, with limit 2**63 - 1, a byte size) as the database keeps it;
    anything else (not a number, not finite, out of range) is not kept."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 <= value < limit:
        return None
    return int(value)


def record(kind: str, status: str, sample: dict, *, now: dt.datetime) -> None:
    many, busy = (
        ("nodes_alive", "running_tasks")
        if kind == Kind.RAY
        else ("workers", "processing")
    )
    cpu = sample.get("cpu_percent")
    history.record(
        kind,
        [
            Point(
                up=status == FrameworkStatus.ACTIVE,
                value=float(cpu) if _whole(cpu) is not None else None,
                gauge=_whole(sample.get("memory_used"), 2**63 - 1),
                count=_whole(sample.get(many)),
                total=_whole(sample.get(busy)),
            )
        ],
        at=now,
    )


RAY = history.register(
    Series(
        "ray", 5, _interval, up="active", value="cpu_percent",
        gauge="memory_used_bytes", count="nodes_alive", total="running_tasks",
        whole=True,
    )
)  # fmt: skip
DASK = history.register(
    Series(
        "dask", 6, _interval, up="active", value="cpu_percent",
        gauge="memory_used_bytes", count="workers", total="processing",
        whole=True,
    )
)  # fmt: skip

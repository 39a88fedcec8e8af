"""The Ray and Dask clusters for /api/prometheus (activity.prometheus).

One series each for the frameworks this dashboard watches (a URL is set and a
collection was stored): whether its last collection found it active, its status,
and how long that collection took. The clusters' own numbers are Prometheus
metrics of theirs already (Ray and Dask both export them).
"""

from __future__ import annotations

from collections.abc import Iterator

from core.prometheus import Family
from frameworks.choices import FrameworkStatus
from frameworks.models import FrameworkSnapshot, FrameworkState


def frameworks() -> Iterator[Family]:
    up = Family(
        "sollol_framework_up",
        "gauge",
        "Whether the framework's dashboard answered its last collection.",
    )
    status = Family(
        "sollol_framework_status",
        "gauge",
        "Status of the framework: 1 for its current status, 0 for the others.",
    )
    duration = Family(
        "sollol_framework_collection_duration_seconds",
        "gauge",
        "How long the framework's last collection took.",
    )
    for kind, current in FrameworkState.objects.order_by("kind").values_list(
        "kind", "status"
    ):
        label = f'framework="{kind}"'
        up.add(label, 1 if current == FrameworkStatus.ACTIVE else 0)
        for name in FrameworkStatus.values:
            status.add(f'{label},status="{name}"', 1 if name == current else 0)
        seconds = (
            FrameworkSnapshot.objects.filter(kind=kind)
            .order_by("-id")
            .values_list("duration_ms", flat=True)
            .first()
        )
        if seconds is not None:
            duration.add(label, seconds / 1000)
    yield from (up, status, duration)

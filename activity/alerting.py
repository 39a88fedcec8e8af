"""What can be alerted on: conditions the domains register, the alerts app checks.

The alerting engine (alerts/) knows no node or application. Each domain registers
the conditions it can tell (network: a node down, a GPU nearly full; applications:
an application stale; activity itself: gateway and reported requests failing) with
a function that returns what is true *now*, one `Finding` a subject. The engine
turns findings into alerts with a life (pending, firing, resolved) and notifies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, Min, Q, Sum


@dataclass(frozen=True)
class Finding:
    """A condition true now for one subject, with its value and words."""

    subject: str  # the node, backend or app as the API names it; "fleet"
    value: float | None
    message: str


@dataclass(frozen=True)
class Check:
    """The rule's settings a condition is checked with."""

    threshold: float | None
    window: dt.timedelta
    now: dt.datetime
    # What conditions read this round, shared by every rule's check of the round.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def once(self, key: object, read: Callable[[], Any]) -> Any:
        """`read()`, read once a round: rules of one kind with different
        thresholds (GPU memory over 85 % here, 95 % there) read the same rows."""
        if key not in self.memo:
            self.memo[key] = read()
        return self.memo[key]


@dataclass(frozen=True)
class Condition:
    """One kind of rule: what it watches and how it is read."""

    kind: str
    label: str
    subject: str  # what its findings name: node, backend, app, model, fleet
    severity: str  # the built-in rule's
    threshold: float | None  # the built-in rule's; None: the kind takes none
    unit: str
    find: Callable[[Check], list[Finding]]
    window: float = 0.0  # seconds, the built-in rule's; 0: the kind takes none


_conditions: dict[str, Condition] = {}


def register(condition: Condition) -> Condition:
    """Make a kind of rule known (each domain, in its AppConfig.ready())."""
    known = _conditions.setdefault(condition.kind, condition)
    if known is not condition and known.find is not condition.find:
        raise ValueError(f"condition {condition.kind!r} is registered already")
    return condition


def conditions() -> dict[str, Condition]:
    return dict(_conditions)


# How each kind of subject is labelled (core/labels.py): the domain that keeps the
# subjects registers a reader of {subject: labels} for those that have labels.
Labelled = Callable[[], dict[str, dict[str, str]]]
_labellers: dict[str, Labelled] = {}


def register_labels(subject: str, read: Labelled) -> None:
    """Say how subjects of a kind (node, backend, app) are labelled."""
    _labellers[subject] = read


def labels_of(subject: str, check: Check) -> dict[str, dict[str, str]]:
    """{subject: labels} of a kind of subject, read once a round; {} for a kind
    nobody labels (models, the fleet)."""
    read = _labellers.get(subject)
    if read is None:
        return {}
    return check.once(("labels", subject), read)


# --- activity's own: requests, from the gateway and reported by routers ----------


def failing_requests(check: Check) -> list[Finding]:
    """Nodes whose share of failed requests in the window is over the threshold."""
    from activity.models import RequestRecord

    share = check.threshold if check.threshold is not None else 0.05
    rows = check.once(
        ("requests failed by node", check.window),
        lambda: list(
            RequestRecord.objects.filter(timestamp__gte=check.now - check.window)
            .values("node")
            .annotate(total=Count("id"), failed=Count("id", filter=Q(ok=False)))
            .filter(total__gte=MIN_REQUESTS)
        ),
    )
    minutes = check.window.total_seconds() / 60
    return [
        Finding(
            row["node"] or "(no node)",
            row["failed"] / row["total"],
            f"{row['failed']} of {row['total']} requests to {row['node'] or 'no node'} "
            f"failed in the last {minutes:g} min",
        )
        for row in rows
        if row["failed"] / row["total"] > share
    ]


MIN_REQUESTS = 10  # fewer in the window say too little to alert on

register(
    Condition(
        kind="error_rate",
        label="Requests failing",
        subject="node",
        severity="warning",
        threshold=0.05,
        unit="ratio",
        window=300.0,
        find=failing_requests,
    )
)


def _minutes(check: Check) -> dt.datetime:
    """The first whole minute of the window: the rollups are read from there."""
    since = check.now - check.window
    return since.replace(second=0, microsecond=0)


def slow_requests(check: Check) -> list[Finding]:
    """Nodes whose p99 latency over the window is over the threshold (ms),
    estimated from the per-minute histograms (activity/rollups.py)."""
    from activity.models import BUCKET_FIELDS, MinuteRollup
    from activity.rollups import estimate_percentile

    limit = check.threshold if check.threshold is not None else 30_000.0
    rows = check.once(
        ("latency by node", check.window),
        lambda: list(
            MinuteRollup.objects.filter(start__gte=_minutes(check))
            .values("node")
            .annotate(
                s_requests=Sum("requests"),
                s_low=Min("latency_ms_min"),
                s_high=Max("latency_ms_max"),
                **{"s_" + name: Sum(name) for name in BUCKET_FIELDS},
            )
            .filter(s_requests__gte=MIN_REQUESTS)
        ),
    )
    minutes = check.window.total_seconds() / 60
    found = []
    for row in rows:
        p99 = estimate_percentile(
            [row["s_" + name] for name in BUCKET_FIELDS],
            0.99,
            low=row["s_low"],
            high=row["s_high"],
        )
        if p99 is not None and p99 > limit:
            node = row["node"] or "(no node)"
            found.append(
                Finding(
                    node,
                    p99,
                    f"p99 latency of {row['s_requests']} requests to {node} in the "
                    f"last {minutes:g} min is {p99:,.0f} ms",
                )
            )
    return found


def requested_models(check: Check) -> dict[str, int]:
    """{model: requests} asked for in the window (gateway and reported)."""
    from activity.models import MinuteRollup

    rows = (
        MinuteRollup.objects.filter(start__gte=_minutes(check))
        .exclude(model="")
        .values("model")
        .annotate(s_requests=Sum("requests"))
    )
    return {row["model"]: row["s_requests"] for row in rows}


register(
    Condition(
        kind="latency_p99",
        label="Requests slow (p99)",
        subject="node",
        severity="warning",
        threshold=30_000.0,
        unit="ms",
        window=300.0,
        find=slow_requests,
    )
)

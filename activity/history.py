"""History: measurements kept as downsampled series, for charts and availability.

Each domain registers its series (network: each node, each backend, the fleet;
applications: their counts; frameworks: Ray's and Dask's numbers) and names what
its columns hold. A measurement is one `SeriesMeasurement`, written where it
is taken (a probe's result, a collection) or, for what no probe measures (the
fleet, the applications), by `sample` every SOLLOL_HISTORY_INTERVAL seconds.
No probe, no point: a gap in a chart is a time nobody measured.

`roll_up` sums closed minutes of measurements into minute points and closed hours
of minute points into hour points; `prune` keeps each step for its retention
(SOLLOL_HISTORY_RAW_RETENTION, ..._MINUTE_..., ..._HOUR_...). Reading picks the
finest step that covers the window in at most MAX_POINTS points, and fills what
its step has not rolled up yet (the last minute, the last hour) from the finer
steps, so a chart is whole up to the last measurement.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, IntegerField, Max, Min, Sum
from django.db.models.functions import Cast, Trunc

from activity.models import SeriesHour, SeriesMark, SeriesMeasurement, SeriesMinute
from core.db import insert_values

logger = logging.getLogger(__name__)

UTC = dt.UTC
MINUTE, HOUR = 60, 3600
STEPS = (0, MINUTE, HOUR)
# Where each step is kept: a table each, so that a query of one step reads only
# its rows (and the planner counts only them), and pruning one is a range of it.
TABLES = {0: SeriesMeasurement, MINUTE: SeriesMinute, HOUR: SeriesHour}
# Each rolled-up step and the step it is summed from.
ROLLUPS = ((MINUTE, 0), (HOUR, MINUTE))
TRUNC = {MINUTE: "minute", HOUR: "hour"}
# A measurement may reach the database this long after it was taken (a probe
# round's deadline, the writer's batching): a minute is rolled up only then.
GRACE = dt.timedelta(seconds=30)
# A rollup run sums at most this many of its steps (60 minutes of 1,000 nodes:
# 60,000 rows in memory); a long outage catches up in the runs after.
CATCH_UP = 60
MAX_POINTS = 1500  # one chart, per subject
MANY_POINTS = 60_000  # one answer for many subjects, in all
AVAILABILITY_POINTS = 200  # a subject, summed by SQL
# More subjects than this are not listed in SQL (SQLite takes at most 32,766
# parameters): every subject of the series is read, the others dropped after.
LISTED_SUBJECTS = 500
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Point:
    """One measurement of a subject, as a domain takes it."""

    subject: int = 0
    up: bool = False
    value: float | None = None
    gauge: int | None = None
    count: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Series:
    """A kind of series: its stored code and what its columns mean in answers.

    A column named None is not kept for this series; a ``whole`` series has
    one subject, 0, and is served at /api/history/<name>. ``interval`` tells how
    often it is measured (seconds), to choose a chart's step; ``sample``, when
    given, takes the measurements `sample` writes (what no probe measures).
    """

    name: str
    code: int  # stored: never reuse one
    interval: Callable[[], float]
    up: str = "up"
    value: str | None = None
    gauge: str | None = None
    count: str | None = None
    total: str | None = None
    whole: bool = False  # one subject (0): the fleet, all applications, a cluster
    sample: Callable[[dt.datetime], list[Point]] | None = field(
        default=None, compare=False
    )


_series: dict[str, Series] = {}


def register(series: Series) -> Series:
    """Make a series known (each domain, in its AppConfig.ready())."""
    known = _series.setdefault(series.name, series)
    if known != series:
        raise ValueError(f"series {series.name!r} is registered already")
    if any(s.code == series.code and s.name != series.name for s in _series.values()):
        raise ValueError(f"series code {series.code} is taken")
    return series


def get(name: str) -> Series:
    return _series[name]


def registered() -> list[Series]:
    return list(_series.values())


# ----------------------------------------------------------------- writing


def record(name: str, points: Iterable[Point], *, at: dt.datetime) -> int:
    """Keep measurements taken at ``at``; return how many."""
    code = _series[name].code
    rows = [
        {
            "series": code,
            "subject": p.subject,
            "at": at,
            "up": bool(p.up),
            "value": p.value,
            "gauge": p.gauge,
            "count": p.count,
            "total": p.total,
        }
        for p in points
    ]
    # A second measurement at the very same instant is the same measurement.
    insert_values(SeriesMeasurement, rows, ignore_conflicts=True)
    return len(rows)


def sample(*, now: dt.datetime) -> int:
    """Take the measurements of every series that has a sampler; one that fails
    is logged and left out of this turn (a gap), the others are kept."""
    kept = 0
    for series in registered():
        if series.sample is None:
            continue
        try:
            with transaction.atomic():
                kept += record(series.name, series.sample(now), at=now)
        except Exception:
            logger.exception("history: measuring %s failed", series.name)
    return kept


def floor(moment: dt.datetime, step: int) -> dt.datetime:
    if step == 0:
        return moment
    seconds = int(moment.timestamp()) // step * step
    return dt.datetime.fromtimestamp(seconds, UTC)


def _sums(step: int) -> dict[str, Any]:
    """How a step's rows sum into a coarser one (n, up, value_sum, value_n,
    value_max, gauge, count, total, in that order)."""
    if step == 0:
        sums = {
            "s_n": Count("*"),
            "s_up": Sum(Cast("up", IntegerField())),
            "s_value_sum": Sum("value"),
            "s_value_n": Count("value"),
            "m_value_max": Max("value"),
        }
    else:
        sums = {
            "s_n": Sum("n"),
            "s_up": Sum("up"),
            "s_value_sum": Sum("value_sum"),
            "s_value_n": Sum("value_n"),
            "m_value_max": Max("value_max"),
        }
    return {
        **sums,
        "m_gauge": Max("gauge"),
        "m_count": Max("count"),
        "m_total": Max("total"),
    }


# A step's columns in _fold's order (a measurement's n is 1, its value its max).
COLUMNS = {
    0: ("up", "value", "value", "gauge", "count", "total"),
    MINUTE: ("n", "up", "value_sum", "value_n", "value_max", "gauge", "count", "total"),
}
COLUMNS[HOUR] = COLUMNS[MINUTE]


def _marks() -> dict[int, dt.datetime]:
    return dict(SeriesMark.objects.values_list("step", "until"))


def roll_up(*, now: dt.datetime) -> dict[int, int]:
    """Sum every closed minute and hour not summed yet; return points made a step.

    One run at a time per step (the mark's row is locked); a run that loses a
    race finds the points made already (same key) and leaves them.
    """
    made = {}
    for step, source in ROLLUPS:
        cutoff = floor(now - GRACE, step)
        with transaction.atomic():
            SeriesMark.objects.bulk_create(
                [SeriesMark(step=step, until=EPOCH)], ignore_conflicts=True
            )
            mark = SeriesMark.objects.select_for_update().get(step=step)
            since = mark.until
            if source:
                # Only whole steps of what the source step summed: an hour is made
                # once, from all its minutes (a minute mark mid-hour waits).
                cutoff = min(cutoff, floor(_marks().get(source, EPOCH), step))
            if since == EPOCH:
                first = TABLES[source].objects.aggregate(first=Min("at"))["first"]
                if first is None:
                    continue
                since = floor(first, step)
            until = min(cutoff, since + dt.timedelta(seconds=step * CATCH_UP))
            if until <= since:
                continue
            rows = (
                TABLES[source]
                .objects.filter(at__gte=since, at__lt=until)
                .annotate(bucket=Trunc("at", TRUNC[step], tzinfo=UTC))
                .values("series", "subject", "bucket")
                .annotate(**_sums(source))
            )
            points = [
                {
                    "series": r["series"],
                    "subject": r["subject"],
                    "at": r["bucket"],
                    "n": r["s_n"],
                    "up": r["s_up"],
                    "value_sum": r["s_value_sum"],
                    "value_n": r["s_value_n"],
                    "value_max": r["m_value_max"],
                    "gauge": r["m_gauge"],
                    "count": r["m_count"],
                    "total": r["m_total"],
                }
                for r in rows
            ]
            insert_values(TABLES[step], points, ignore_conflicts=True)
            SeriesMark.objects.filter(step=step).update(until=until)
            made[step] = len(points)
    return made


def prune(*, now: dt.datetime, retention: dict[int, float]) -> dict[int, int]:
    """Delete each step's points older than its retention (seconds)."""
    pruned = {}
    for step in STEPS:
        before = now - dt.timedelta(seconds=retention[step])
        pruned[step], _ = TABLES[step].objects.filter(at__lt=before).delete()
    return pruned


# ----------------------------------------------------------------- reading


def retention() -> dict[int, float]:
    """Each step's retention in seconds, as the operator set it."""
    return {
        0: settings.SOLLOL_HISTORY_RAW_RETENTION,
        MINUTE: settings.SOLLOL_HISTORY_MINUTE_RETENTION,
        HOUR: settings.SOLLOL_HISTORY_HOUR_RETENTION,
    }


def choose_step(
    series: Series,
    window: float,
    *,
    retention: dict[int, float],
    max_points: int = MAX_POINTS,
) -> int:
    """The finest step that keeps the whole window, in at most max_points points."""
    interval = max(series.interval(), 1.0)
    for step in STEPS:
        points = window / (step or interval)
        if retention[step] >= window and points <= max_points:
            return step
    return HOUR


def _ranges(
    step: int, since: dt.datetime, now: dt.datetime
) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """(stored step, from, to) that together cover [since, now): the chosen
    step as far as it is rolled up, then each finer step after it."""
    marks = _marks()
    ranges = []
    start = since
    for tier in reversed(STEPS):
        if tier > step:
            continue
        end = marks.get(tier, EPOCH) if tier else now + dt.timedelta(seconds=1)
        if end > start:
            ranges.append((tier, start, end))
            start = end
    return ranges


def _stored(
    series: Series,
    subjects: list[int] | None,
    step: int,
    since: dt.datetime,
    now: dt.datetime,
) -> Iterable[tuple]:
    for tier, start, end in _ranges(step, floor(since, step), now):
        rows = TABLES[tier].objects.filter(
            series=series.code, at__gte=start, at__lt=end
        )
        if subjects is not None and len(subjects) <= LISTED_SUBJECTS:
            rows = rows.filter(subject__in=subjects)
        rows = rows.values_list("subject", "at", *COLUMNS[tier]).order_by(
            "subject", "at"
        )
        if tier:
            yield from rows
            continue
        for subject, at, up, value, *rest in rows:
            yield (subject, at, 1, int(up), value, int(value is not None), *rest)


def _fold(rows: Iterable[tuple], step: int) -> dict[int, dict[dt.datetime, list]]:
    """{subject: {bucket: [n, up, value_sum, value_n, value_max, gauge, count,
    total]}} with rows of finer steps summed into their bucket."""
    out: dict[int, dict[dt.datetime, list]] = {}
    for subject, at, *cols in rows:
        buckets = out.setdefault(subject, {})
        key = floor(at, step)
        have = buckets.get(key)
        if have is None:
            buckets[key] = list(cols)
            continue
        for i in range(4):  # n, up, value_sum, value_n: sums
            if cols[i] is not None:
                have[i] = cols[i] if have[i] is None else have[i] + cols[i]
        for i in range(4, 8):  # value_max, gauge, count, total: highest
            if cols[i] is not None and (have[i] is None or cols[i] > have[i]):
                have[i] = cols[i]
    return out


def _point(series: Series, at: dt.datetime, cols: list) -> dict[str, Any]:
    n, up, value_sum, value_n, value_max, gauge, count, total = cols
    point: dict[str, Any] = {
        "t": at.timestamp(),
        "n": n,
        series.up: up / n if n else None,
    }
    if series.value:
        point[series.value] = round(value_sum / value_n, 3) if value_n else None
        point[series.value + "_max"] = value_max
    for name, value in (
        (series.gauge, gauge),
        (series.count, count),
        (series.total, total),
    ):
        if name:
            point[name] = value
    return point


def _widened(step: int, window: float, points: int) -> int:
    """A bucket of whole steps, wide enough for the window in at most `points`
    (even hours are too many for a year in one chart, or a day of many nodes)."""
    if step and window / step > points:
        return math.ceil(window / points / step) * step
    return step


def _answer(series: Series, step: int, window: float, now: dt.datetime) -> dict:
    return {
        "series": series.name,
        "window": window,
        "step": step,
        "resolution": {0: "raw", MINUTE: "minute", HOUR: "hour"}[step],
        "since": (now - dt.timedelta(seconds=window)).timestamp(),
        "until": now.timestamp(),
    }


def history(
    name: str,
    subject: int,
    *,
    window: float,
    now: dt.datetime,
    retention: dict[int, float],
) -> dict[str, Any]:
    """One subject's points over the window, and its share of time up."""
    series = _series[name]
    step = choose_step(series, window, retention=retention)
    since = now - dt.timedelta(seconds=window)
    bucket = _widened(step, window, MAX_POINTS)
    buckets = _fold(_stored(series, [subject], step, since, now), bucket).get(
        subject, {}
    )
    points = [_point(series, at, cols) for at, cols in sorted(buckets.items())]
    n = sum(p["n"] for p in points)
    up = sum(cols[1] for cols in buckets.values())
    return {
        **_answer(series, step, window, now),
        "bucket": bucket,
        "subject": subject,
        "availability": round(up / n, 6) if n else None,
        "measurements": n,
        "points": points,
    }


def history_many(
    name: str,
    subjects: list[int],
    *,
    window: float,
    now: dt.datetime,
    retention: dict[int, float],
) -> dict[str, Any]:
    """Many subjects' points over the window, at one step for all."""
    series = _series[name]
    budget = max(10, MANY_POINTS // max(1, len(subjects)))
    step = choose_step(
        series, window, retention=retention, max_points=min(MAX_POINTS, budget)
    )
    since = now - dt.timedelta(seconds=window)
    bucket = _widened(step, window, budget)
    wanted = set(subjects)
    folded = _fold(_stored(series, subjects, step, since, now), bucket)
    folded = {
        subject: buckets for subject, buckets in folded.items() if subject in wanted
    }
    return {
        **_answer(series, step, window, now),
        "bucket": bucket,
        "subjects": {
            subject: [_point(series, at, cols) for at, cols in sorted(buckets.items())]
            for subject, buckets in folded.items()
        },
    }


def availability(
    name: str, *, window: float, now: dt.datetime, retention: dict[int, float]
) -> dict[int, tuple[int, int]]:
    """{subject: (measurements up, measurements)} over the window, summed by SQL
    at a coarse step that keeps the window, and the finer ones after it."""
    series = _series[name]
    # Few points a subject: the window's edge is then within one step of exact.
    step = choose_step(
        series, window, retention=retention, max_points=AVAILABILITY_POINTS
    )
    since = floor(now - dt.timedelta(seconds=window), step)
    out: dict[int, list[int]] = {}
    for tier, start, end in _ranges(step, since, now):
        sums = _sums(tier)
        rows = (
            TABLES[tier]
            .objects.filter(series=series.code, at__gte=start, at__lt=end)
            .values("subject")
            .annotate(s_n=sums["s_n"], s_up=sums["s_up"])
            .values_list("subject", "s_up", "s_n")
        )
        for subject, up, n in rows:
            have = out.setdefault(subject, [0, 0])
            have[0] += up
            have[1] += n
    return {subject: (up, n) for subject, (up, n) in out.items()}

"""Requests as per-minute, hour and day rollups: how /api/metrics answers long windows.

Every batch `metrics.record_requests` stores is also added, in the same transaction,
into one row per minute, hour and day for each (node, model, application, endpoint,
status class, source) it holds: requests, errors, the latency's sum, least and
most, a histogram of fixed bounds (models.LATENCY_BOUNDS_MS, one integer column
each), token sums, time to first token and queue wait. The increments are done by
the database (core.db.add_into), so writers in several processes lose nothing.
Gateway requests also go into GatewayTotals, the Prometheus counters.

Raw requests are kept only as long as exact percentiles of short windows need
them (metrics.EXACT_WINDOW). A longer window is summed by SQL (SUM ... GROUP BY)
from the rollups: it starts on a whole minute while minute rows reach back that
far (SOLLOL_ROLLUP_MINUTE_RETENTION), else on a whole hour, and in between the
longest periods that fit are read, so a 30-day window reads a day's hours and 30
days per key rather than 720 hours or 43,200 minutes. Its percentiles are
estimated from the histogram, and its answer says so.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from django.db.models import Max, Min, QuerySet, Sum

from activity.models import (
    BUCKET_FIELDS,
    LATENCY_BOUNDS_MS,
    DayRollup,
    GatewayTotals,
    HourRollup,
    MinuteRollup,
    RequestRecord,
    RequestRollup,
)
from core.db import add_into

MINUTE = 60
HOUR = 3600
DAY = 86400
LEVELS = ((MinuteRollup, MINUTE), (HourRollup, HOUR), (DayRollup, DAY))
ESTIMATED = "estimated from latency buckets"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def status_class(status_code: int | None, ok: bool) -> str:
    """The status class: "2xx", "4xx"... from an HTTP status, else "ok" or "error"."""
    if status_code:
        return f"{status_code // 100}xx"
    return "ok" if ok else "error"


def _floor(moment: dt.datetime, period: int) -> dt.datetime:
    """The start of the minute, hour or day (UTC) a moment falls in."""
    moment = moment.astimezone(dt.UTC).replace(second=0, microsecond=0)
    if period == MINUTE:
        return moment
    return moment.replace(minute=0, hour=0 if period == DAY else moment.hour)


def bucket_field(latency_ms: float) -> str:
    """The histogram column a latency counts in (bounds are inclusive)."""
    return BUCKET_FIELDS[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)]


# --- writing ----------------------------------------------------------------------


def add_requests(records: Sequence[Any]) -> None:
    """Add stored requests into their minutes, hours, days and the gateway's totals.

    records: RequestRecords, or anything with their fields (metrics.RequestReport).

    Call inside the transaction that stores them. Rows are written sorted by key,
    minutes, hours, days, then totals, so concurrent writers lock in one order.
    """
    minutes: dict[tuple, dict[str, Any]] = {}
    totals: dict[tuple, dict[str, Any]] = {}
    for record in records:
        key = (
            _floor(record.timestamp, MINUTE),
            record.node,
            record.model,
            record.app_id,
            record.endpoint,
            status_class(record.status_code, record.ok),
            record.source,
        )
        _add(minutes, key, record)
        if record.source == RequestRecord.Source.GATEWAY:
            _add_total(totals, record)
    merge = {"least": ("latency_ms_min",), "greatest": ("latency_ms_max",)}
    periods = minutes
    for model, period in LEVELS:
        if period != MINUTE:
            periods = _coarser(periods, period)
        add_into(
            model, _rows(periods, RequestRollup.KEY), key=RequestRollup.KEY, **merge
        )
    add_into(GatewayTotals, _rows(totals, GatewayTotals.KEY), key=GatewayTotals.KEY)


def _coarser(groups: dict[tuple, dict[str, Any]], period: int) -> dict[tuple, dict]:
    """The same sums per longer period (an hour, a day)."""
    coarser: dict[tuple, dict[str, Any]] = {}
    for (start, *rest), sums in groups.items():
        key = (_floor(start, period), *rest)
        if key in coarser:
            _merge(coarser[key], sums)
        else:
            coarser[key] = dict(sums)
    return coarser


def _empty(latency_ms: float) -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "latency_ms_sum": 0.0,
        "latency_ms_min": latency_ms,
        "latency_ms_max": latency_ms,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "token_requests": 0,
        "token_latency_ms_sum": 0.0,
        "ttft_ms_sum": 0.0,
        "ttft_count": 0,
        "queue_ms_sum": 0.0,
        "queue_count": 0,
        **dict.fromkeys(BUCKET_FIELDS, 0),
    }


def _add(
    groups: dict[tuple, dict[str, Any]], key: tuple, record: RequestRecord
) -> None:
    latency = record.latency_ms
    sums = groups.get(key)
    if sums is None:
        sums = groups[key] = _empty(latency)
    sums["requests"] += 1
    sums["errors"] += not record.ok
    sums["latency_ms_sum"] += latency
    sums["latency_ms_min"] = min(sums["latency_ms_min"], latency)
    sums["latency_ms_max"] = max(sums["latency_ms_max"], latency)
    sums[bucket_field(latency)] += 1
    sums["prompt_tokens"] += record.prompt_tokens or 0
    if record.completion_tokens is not None:
        sums["completion_tokens"] += record.completion_tokens
        sums["token_requests"] += 1
        sums["token_latency_ms_sum"] += latency
    if record.ttft_ms is not None:
        sums["ttft_ms_sum"] += record.ttft_ms
        sums["ttft_count"] += 1
    if record.queue_ms is not None:
        sums["queue_ms_sum"] += record.queue_ms
        sums["queue_count"] += 1


def _merge(into: dict[str, Any], sums: dict[str, Any]) -> None:
    for name, value in sums.items():
        if name == "latency_ms_min":
            into[name] = min(into[name], value)
        elif name == "latency_ms_max":
            into[name] = max(into[name], value)
        else:
            into[name] += value


def _add_total(totals: dict[tuple, dict[str, Any]], record: RequestRecord) -> None:
    key = (record.node, record.model, record.status_code or 0)
    sums = totals.get(key)
    if sums is None:
        sums = totals[key] = {
            "requests": 0,
            "latency_seconds_sum": 0.0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            **dict.fromkeys(BUCKET_FIELDS, 0),
        }
    sums["requests"] += 1
    sums["latency_seconds_sum"] += record.latency_ms / 1000
    sums["prompt_tokens"] += record.prompt_tokens or 0
    sums["completion_tokens"] += record.completion_tokens or 0
    sums[bucket_field(record.latency_ms)] += 1


def _rows(groups: dict[tuple, dict[str, Any]], key: Sequence[str]) -> list[dict]:
    return [
        {**dict(zip(key, values, strict=True)), **sums}
        for values, sums in sorted(groups.items())
    ]


def prune_rollups(
    *, now: dt.datetime, minute_age: float, hour_age: float
) -> dict[str, int]:
    """Delete rows whose period began longer ago than their age (days go with
    hours: a day row is kept as long as the hours it sums)."""
    pruned = {}
    for name, model, age in (
        ("minutes", MinuteRollup, minute_age),
        ("hours", HourRollup, hour_age),
        ("days", DayRollup, hour_age),
    ):
        pruned[name], _ = model.objects.filter(
            start__lt=now - dt.timedelta(seconds=age)
        ).delete()
    return pruned


# --- reading ----------------------------------------------------------------------

_SUMMED = (
    "requests",
    "errors",
    "latency_ms_sum",
    "completion_tokens",
    "token_requests",
    "token_latency_ms_sum",
    *BUCKET_FIELDS,
)


def _aggregates() -> dict[str, Any]:
    # Named apart from the columns: an annotation may not shadow a field.
    return {
        **{f"agg_{name}": Sum(name) for name in _SUMMED},
        "agg_latency_ms_min": Min("latency_ms_min"),
        "agg_latency_ms_max": Max("latency_ms_max"),
    }


def _sums(row: dict[str, Any]) -> dict[str, Any]:
    return {name[4:]: value for name, value in row.items() if name.startswith("agg_")}


def window_metrics(
    *,
    window: float,
    since: dt.datetime,
    now: dt.datetime,
    buckets: int,
    resolution: int,
    filters: dict[str, str],
) -> dict[str, Any]:
    """Return /api/metrics for the window from the rollups, from `resolution` on.

    The window starts at its first whole period of `resolution` (a minute, or an
    hour for windows longer than minutes are kept): the partial one before holds
    requests from before the window. It ends now: the current period's rows hold
    every request up to now. In between, the longest periods that fit are read
    (_pieces): a month is a day's hours, then days; a few dozen rows per key.
    The series' buckets are whole periods: window ÷ buckets rounded up to the
    resolution.
    """
    now_s = (now - _EPOCH).total_seconds()
    since_s = (since - _EPOCH).total_seconds()
    current = math.floor(now_s / resolution) * resolution
    first = min(math.ceil(since_s / resolution) * resolution, current)
    levels = [(model, period) for model, period in LEVELS if period >= resolution]
    per: dict[str, dict[str, dict]] = {"node": {}, "model": {}, "app_id": {}}
    total: dict[str, Any] | None = None
    for rows in _read(levels, first, now_s, filters):
        for row in rows.values("node", "model", "app_id").annotate(**_aggregates()):
            sums = _sums(row)
            total = _combined(total, sums)
            for label, groups in per.items():
                groups[row[label]] = _combined(groups.get(row[label]), sums)
    seconds = max(now_s - first, 1e-6)
    width = max(1, math.ceil(window / buckets / resolution - 1e-9)) * resolution
    return {
        "window_seconds": window,
        "since": float(first),
        "until": now.timestamp(),
        "answered_from": "rollups",
        "resolution_seconds": resolution,
        "percentiles": ESTIMATED,
        "totals": _analyse(total, seconds),
        "per_node": _breakdown(per["node"], seconds, "node"),
        "per_model": _breakdown(per["model"], seconds, "model"),
        "per_application": _breakdown(per["app_id"], seconds, "app_id"),
        # Periods that fit in a bucket whole: a bucket of 6 h takes no days.
        **_series(
            [level for level in levels if width % level[1] == 0],
            first=first,
            now_s=now_s,
            width=width,
            filters=filters,
        ),
    }


def _pieces(
    levels: Sequence[tuple[type[RequestRollup], int]], first: int, now_s: float
) -> list[tuple[type[RequestRollup], int, int]]:
    """Cover first (on an edge of the finest level) to now with the fewest rows.

    Each piece is (model, from, to): the rows starting from `from` and before `to`.
    The finest periods run to the first edge of the next level, and so on; the
    coarsest run to its current period, which holds everything up to now.
    """
    pieces = []
    start = first
    for index, (model, period) in enumerate(levels):
        if index + 1 < len(levels):
            coarser = levels[index + 1][1]
            edge = math.ceil(start / coarser) * coarser
            if edge <= now_s:  # the coarser period from there has begun
                if edge > start:
                    pieces.append((model, start, edge))
                start = edge
                continue
        pieces.append((model, start, math.floor(now_s / period) * period + period))
        break
    return pieces


def _read(
    levels: Sequence[tuple[type[RequestRollup], int]],
    first: int,
    now_s: float,
    filters: dict[str, str],
) -> list[QuerySet]:
    return [
        model.objects.filter(
            start__gte=_EPOCH + dt.timedelta(seconds=low),
            start__lt=_EPOCH + dt.timedelta(seconds=high),
            **filters,
        ).order_by()
        for model, low, high in _pieces(levels, first, now_s)
    ]


def _combined(into: dict[str, Any] | None, sums: dict[str, Any]) -> dict[str, Any]:
    if into is None:
        return dict(sums)
    _merge(into, sums)
    return into


def _breakdown(groups: dict[str, dict], seconds: float, label: str) -> list[dict]:
    ordered = sorted(groups.items(), key=lambda item: (-item[1]["requests"], item[0]))
    return [{label: key, **_analyse(sums, seconds)} for key, sums in ordered]


def _analyse(sums: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    """The numbers metrics._analyse gives for raw requests, from summed rollups."""
    if not sums or not sums["requests"]:
        sums = {"requests": 0, "errors": 0, "token_requests": 0}
    requests, failed = sums["requests"], sums["errors"]
    token_seconds = (sums.get("token_latency_ms_sum") or 0) / 1000
    return {
        "requests": requests,
        "errors": failed,
        "requests_per_second": round(requests / seconds, 4),
        "success_rate": round(1 - failed / requests, 4) if requests else None,
        "latency_ms": {
            **_percentiles(sums),
            "mean": (round(sums["latency_ms_sum"] / requests, 2) if requests else None),
        },
        "tokens_per_second": (
            round(sums["completion_tokens"] / token_seconds, 2)
            if token_seconds > 0
            else None
        ),
        "completion_tokens": (
            sums["completion_tokens"] if sums["token_requests"] else None
        ),
    }


def _percentiles(sums: dict[str, Any]) -> dict[str, float | None]:
    if not sums.get("requests"):
        return {"p50": None, "p95": None, "p99": None}
    counts = [sums[name] for name in BUCKET_FIELDS]
    low, high = sums["latency_ms_min"], sums["latency_ms_max"]
    return {
        f"p{round(q * 100)}": estimate_percentile(counts, q, low=low, high=high)
        for q in (0.50, 0.95, 0.99)
    }


def estimate_percentile(
    counts: Sequence[int], q: float, *, low: float, high: float
) -> float | None:
    """Estimate a percentile from histogram counts (one per bound, then beyond).

    The bucket holding the q·n-th request is found and the value interpolated
    linearly inside it, as Prometheus' histogram_quantile does; the bucket's
    edges are narrowed to the least and most latency seen (the one beyond the
    last bound ends at the most), so an estimate never leaves the bucket nor
    the range of what was measured.
    """
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            lower = LATENCY_BOUNDS_MS[index - 1] if index else 0.0
            upper = LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else high
            lower, upper = max(lower, low), min(upper, high)
            value = lower + (upper - lower) * max(rank - below, 0) / count
            return round(value, 2)
        below += count
    return round(high, 2)  # not reached: the counts add up to total


def _series(
    levels: Sequence[tuple[type[RequestRollup], int]],
    *,
    first: int,
    now_s: float,
    width: int,
    filters: dict[str, str],
) -> dict[str, Any]:
    """The window over time, in buckets on multiples of their width since the
    epoch (as metrics._series), each made of whole periods: one GROUP BY period."""
    first_k = first // width
    last_k = math.floor(now_s / levels[0][1]) * levels[0][1] // width
    sums: list[dict[str, Any] | None] = [None] * (last_k - first_k + 1)
    for rows in _read(levels, first, now_s, filters):
        for row in rows.values("start").annotate(**_aggregates()):
            start = round((row["start"] - _EPOCH).total_seconds())
            k = min(max(start // width, first_k), last_k) - first_k
            sums[k] = _combined(sums[k], _sums(row))
    series = []
    for k, bucket in enumerate(sums):
        requests = bucket["requests"] if bucket else 0
        series.append(
            {
                "start": float(max(first, (first_k + k) * width)),
                "end": min(now_s, float((first_k + k + 1) * width)),
                "requests": requests,
                "errors": bucket["errors"] if bucket else 0,
                "latency_ms": _percentiles(bucket or {}),
            }
        )
    return {"bucket_seconds": float(width), "series": series}

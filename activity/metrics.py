"""Router request metrics: what routers and apps report, summed and analysed.

Routers know what the probes can only guess: which request went to which node and
model, how long it took, whether it failed and how many tokens it made. They report
it to POST /api/activity (or DashboardClient.record_request). Each reported request
is kept for the windowed analytics of GET /api/metrics, added to per node and model
totals for Prometheus, and becomes a precise `model_processing` event.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from activity import rollups, streams
from activity.models import RequestRecord, RequestTotals
from activity.services import NewEvent, prune_oldest, record_events
from core import realtime, validators
from core.addresses import node_name
from core.db import insert_values
from core.jsonio import PayloadError

# Upper bounds, in seconds, of the latency histogram kept in RequestTotals.buckets
# (and exported to Prometheus as sollol_router_request_duration_seconds).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

MAX_REQUESTS_PER_REPORT = 5000
MAX_WINDOW = 30 * 24 * 3600.0
# Windows up to this long (and no longer than raw requests are kept) are read
# from the raw requests, with exact percentiles; longer ones from the rollups.
EXACT_WINDOW = 3600.0
DEFAULT_WINDOW = "5m"
# The window's time series: this many buckets unless ?buckets= says otherwise.
DEFAULT_BUCKETS = 30
MAX_BUCKETS = 500
MIN_BUCKET_MICROSECONDS = 1000
_MICROSECOND = dt.timedelta(microseconds=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_WINDOW = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# How far a reported finish time may be from the dashboard's clock.
MAX_CLOCK_SKEW = dt.timedelta(hours=1)


@dataclass(frozen=True)
class RequestReport:
    """One request as a router reported it, validated."""

    node: str
    model: str
    latency_ms: float
    ok: bool
    app_id: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str = ""
    timestamp: dt.datetime | None = None  # when it finished; None: when received
    # Measured by the gateway (network/gateway); None for reported requests.
    source: str = RequestRecord.Source.REPORTED
    endpoint: str = ""
    status_code: int | None = None
    queue_ms: float | None = None
    ttft_ms: float | None = None
    tokens_per_second: float | None = None


# --- input ----------------------------------------------------------------------


def parse_activity(data: Any) -> list[RequestReport]:
    """Return the requests of a POST /api/activity body.

    The body is one request, or {"app_id": ..., "requests": [request, ...]}; an
    app_id inside a request wins over the envelope's.
    """
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object")
    if "requests" not in data:
        return [_parse_request(data, default_app="", index=None)]
    items = data["requests"]
    if not isinstance(items, list):
        raise PayloadError("requests must be a list")
    if len(items) > MAX_REQUESTS_PER_REPORT:
        raise PayloadError(
            f"at most {MAX_REQUESTS_PER_REPORT} requests per report, got {len(items)}"
        )
    app_id = validators.text(data.get("app_id"), "app_id", max_length=128)
    return [
        _parse_request(item, default_app=app_id, index=i)
        for i, item in enumerate(items)
    ]


MAX_LATENCY_MS = 7 * 24 * 3600 * 1000  # a week: anything longer is not a latency


def _parse_request(item: Any, *, default_app: str, index: int | None) -> RequestReport:
    where = "" if index is None else f"requests[{index}]."
    if not isinstance(item, dict):
        raise PayloadError(f"{where or 'a request'} must be a JSON object")
    latency = item.get("latency_ms")
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise PayloadError(f"{where}latency_ms must be a number")
    if not 0 <= latency <= MAX_LATENCY_MS:
        # Sums of a few 1.7e308 overflowed the window's mean to inf, and every
        # /api/metrics after them failed to encode.
        raise PayloadError(f"{where}latency_ms must be between 0 and {MAX_LATENCY_MS}")
    ok = item.get("ok", True)
    if not isinstance(ok, bool):
        raise PayloadError(f"{where}ok must be true or false")
    return RequestReport(
        node=node_name(
            validators.text(item.get("node"), f"{where}node", max_length=300)
        ),
        model=validators.text(item.get("model"), f"{where}model", max_length=200),
        latency_ms=float(latency),
        ok=ok,
        app_id=validators.text(item.get("app_id"), f"{where}app_id", max_length=128)
        or default_app,
        prompt_tokens=validators.count(
            item.get("prompt_tokens"), f"{where}prompt_tokens"
        ),
        completion_tokens=validators.count(
            item.get("completion_tokens"), f"{where}completion_tokens"
        ),
        error=validators.text(
            item.get("error"), f"{where}error", max_length=500, longer="ellipsis"
        ),
        timestamp=validators.timestamp(
            item.get("timestamp"), f"{where}timestamp", iso=False
        ),
    )


def parse_window(
    value: str | None, *, default: str = DEFAULT_WINDOW, maximum: float = MAX_WINDOW
) -> float:
    """Return a window such as "5m", "90s", "1h" or "300" in seconds."""
    text = (value or default).strip().lower()
    match = _WINDOW.fullmatch(text)
    if not match:
        raise PayloadError(
            f"window {value!r} is not a duration such as 30s, 5m, 1h or 1d"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= maximum:
        raise PayloadError(
            f"window must be more than 0 and at most {maximum / 86400:g}d"
        )
    return seconds


# The optional filters of /api/metrics: ?source=, ?node=, ?model=, ?app_id=.
_FILTER_LENGTHS = {"node": 300, "model": 200, "app_id": 128}


def parse_filters(query: Mapping[str, str]) -> dict[str, str]:
    """Return the filters of a query string, as field lookups raw requests and
    rollups share; an empty value filters nothing."""
    filters = {}
    source = query.get("source") or None
    if source is not None:
        if source not in RequestRecord.Source.values:
            choices = " or ".join(RequestRecord.Source.values)
            raise PayloadError(f"source must be {choices}")
        filters["source"] = source
    for name, length in _FILTER_LENGTHS.items():
        value = validators.text(query.get(name), name, max_length=length)
        if value:
            filters[name] = node_name(value) if name == "node" else value
    return filters


def parse_buckets(value: str | None, *, window: float) -> int:
    """Return ?buckets= as the number of buckets the window's series is cut into."""
    most = min(MAX_BUCKETS, max(1, int(window * 1e6) // MIN_BUCKET_MICROSECONDS))
    if value is None or value == "":
        return min(DEFAULT_BUCKETS, most)
    try:
        buckets = int(value)
    except ValueError:
        raise PayloadError("buckets must be a whole number") from None
    if not 1 <= buckets <= most:
        raise PayloadError(
            f"buckets must be between 1 and {most} for this window "
            f"(at most {MAX_BUCKETS}, each at least 1 ms)"
        )
    return buckets


# --- writing ----------------------------------------------------------------------


def record_requests(
    reports: Sequence[RequestReport],
    *,
    now: dt.datetime,
    events: Sequence[RequestReport] | None = None,
) -> int:
    """Store requests, add them to the totals and rollups, announce what models did.

    events: the requests to announce as model_processing events (the gateway
    announces each node and model at most every few seconds); all by default.
    """
    if not reports and not events:
        return 0
    # Reports carry RequestRecord's fields by the same names: stored as they are
    # (core.db.insert_values), with the finishing time a router gave clamped.
    rows = [
        report
        if report.timestamp is not None
        and report.timestamp == _clamped(report.timestamp, now)
        else replace(report, timestamp=_clamped(report.timestamp, now))
        for report in reports
    ]
    with transaction.atomic():
        insert_values(RequestRecord, [vars(row) for row in rows])
        # The router families count what was reported; the gateway's requests
        # have their own (rollups.GatewayTotals, sollol_gateway_*).
        _add_to_totals(
            [r for r in reports if r.source == RequestRecord.Source.REPORTED]
        )
        rollups.add_requests(rows)
        record_events(
            _processing_events(reports if events is None else events), now=now
        )
    return len(rows)


def _clamped(finished: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """Trust a router's clock within an hour; beyond, it is wrong and now is better."""
    if finished is None or abs(finished - now) > MAX_CLOCK_SKEW:
        return now
    return finished


def _add_to_totals(reports: Iterable[RequestReport]) -> None:
    grouped: dict[tuple[str, str], list[RequestReport]] = defaultdict(list)
    for report in reports:
        grouped[(report.node, report.model)].append(report)
    # Each row exists first (nothing is done for a known one): two writers that
    # meet a new node and model at once both inserted it, and one failed on the
    # key. Sorted, so two transactions lock the rows in the same order.
    RequestTotals.objects.bulk_create(
        [RequestTotals(node=node, model=model) for node, model in sorted(grouped)],
        ignore_conflicts=True,
    )
    for (node, model), group in sorted(grouped.items()):
        totals = RequestTotals.objects.select_for_update().get(node=node, model=model)
        buckets = list(totals.buckets) or [0] * (len(LATENCY_BUCKETS) + 1)
        for report in group:
            seconds = report.latency_ms / 1000
            buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            totals.latency_seconds_sum += seconds
            totals.prompt_tokens += report.prompt_tokens or 0
            totals.completion_tokens += report.completion_tokens or 0
        totals.requests += len(group)
        totals.errors += sum(1 for report in group if not report.ok)
        totals.buckets = buckets
        totals.save()


ModelSizes = Callable[[set[str]], dict[tuple[str, str], tuple[int | None, int | None]]]


def _unknown_sizes(nodes: set[str]) -> dict:
    return {}


_loaded_model_sizes: ModelSizes = _unknown_sizes


def register_loaded_model_sizes(lookup: ModelSizes) -> None:
    """Say where the VRAM of a model a node holds is known: the network's probes.

    lookup({"host:port", ...}) returns {(host:port, model): (size_vram, size)};
    activity itself knows no node.
    """
    global _loaded_model_sizes
    _loaded_model_sizes = lookup


def _processing_events(reports: Sequence[RequestReport]) -> list[NewEvent]:
    """One model_processing event per node and model in the report, not per request.

    A busy router reports hundreds of requests a second; the activity feed needs to
    know which models work, with how many requests and how fast, not every one.
    """
    grouped: dict[tuple[str, str], list[RequestReport]] = defaultdict(list)
    for report in reports:
        if report.node and report.model:
            grouped[(report.node, report.model)].append(report)
    if not grouped:
        return []
    vram = _loaded_model_sizes({node for node, _ in grouped})
    events = []
    for (node, model), group in grouped.items():
        size_vram, size = vram.get((node, model), (None, None))
        count = len(group)
        failed = sum(1 for report in group if not report.ok)
        latency = sum(report.latency_ms for report in group) / count
        vram_gb = None if size_vram is None else round(size_vram / 2**30, 2)
        detail = f"VRAM: {vram_gb:.2f}GB" if vram_gb is not None else "VRAM unknown"
        plural = "request" if count == 1 else "requests"
        errors = f", {failed} failed" if failed else ""
        events.append(
            NewEvent(
                streams.MODEL_ACTIVITY,
                "model_processing",
                f"🔄 Processing on {node}: {model} ({detail}; {count} {plural}, "
                f"{latency:.0f} ms avg{errors})",
                {
                    "node": node,
                    "model": model,
                    "vram_gb": vram_gb,
                    "size_vram": size_vram,
                    "size": size,
                    "source": group[0].source,
                    "requests": count,
                    "errors": failed,
                    "latency_ms_avg": round(latency, 2),
                    "app_ids": sorted({r.app_id for r in group if r.app_id}),
                },
            )
        )
    return events


def publish_metrics_sample(*, now: dt.datetime) -> None:
    """Tell viewers (/ws/ollama_activity?samples=1) the time and the newest request.

    A window's numbers change while nothing happens, as old requests leave it;
    this clock, sent every SOLLOL_APP_SAMPLE_INTERVAL, tells a page that shows a
    window with requests in it (or older than the newest request) to read
    /api/metrics again, so it needs no timer of its own.
    """
    # Up to now: a router's clock may run ahead, and its future requests are in
    # no window yet.
    newest = RequestRecord.objects.filter(timestamp__lte=now).aggregate(
        newest=Max("timestamp")
    )["newest"]
    realtime.publish_samples(
        streams.MODEL_ACTIVITY,
        {
            "metrics": {
                "at": now.timestamp(),
                "last_request": newest.timestamp() if newest else None,
            }
        },
    )


def prune_requests(*, now: dt.datetime, max_age: float, max_count: int) -> int:
    """Delete reported requests older than max_age seconds or beyond max_count."""
    return prune_oldest(RequestRecord, now=now, max_age=max_age, max_count=max_count)


# --- analytics --------------------------------------------------------------------


def resolution(window: float) -> int | None:
    """Which rows answer a window: None for the raw requests (short windows, with
    exact percentiles), else the period of the rollups, in seconds.

    Minute rollups while they reach back far enough (48 h by default), hour
    rollups beyond: a 30-day window sums 720 hours per key, not 43,200 minutes.
    """
    if window <= min(EXACT_WINDOW, settings.SOLLOL_REQUEST_RETENTION_AGE):
        return None
    if window <= settings.SOLLOL_ROLLUP_MINUTE_RETENTION:
        return rollups.MINUTE
    return rollups.HOUR


def _raw_requests_reach(since: dt.datetime) -> bool:
    """Whether the raw requests still hold every request of a window from since.

    Past SOLLOL_REQUEST_RETENTION_COUNT requests in the window (500,000 an hour
    is 139 a second) the count prune has taken its first requests; the minute
    rollups still hold them, so they must answer. Both look-ups are index reads.
    """
    first = (
        RequestRecord.objects.order_by("id").values_list("timestamp", flat=True).first()
    )
    if first is None or first <= since:
        return True
    # A whole minute of rollups between the window's start and the oldest raw
    # request held requests the raw rows no longer have.
    whole = since.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    return not rollups.MinuteRollup.objects.filter(
        start__gte=whole, start__lte=first - dt.timedelta(minutes=1)
    ).exists()


def window_metrics(
    *,
    window: float,
    now: dt.datetime,
    buckets: int = DEFAULT_BUCKETS,
    filters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return the analytics of GET /api/metrics over the last `window` seconds."""
    filters = filters or {}
    asked = {
        "window": window,
        "since": now - dt.timedelta(seconds=window),
        "now": now,
        "buckets": buckets,
        "filters": filters,
    }
    period = resolution(window)
    pruned = period is None and not _raw_requests_reach(asked["since"])
    if pruned:
        period = rollups.MINUTE
    if period is None:
        summary = _raw_metrics(**asked)
    else:
        summary = rollups.window_metrics(**asked, resolution=period)
    summary["filters"] = filters
    if pruned:
        summary["note"] = (
            "the raw requests no longer hold this whole window (more of them came "
            "than SOLLOL_REQUEST_RETENTION_COUNT keeps): answered from the minute "
            "rollups, with estimated percentiles"
        )
    if not summary["totals"]["requests"]:
        summary["note"] = (
            "no requests were reported in this window: numbers are null, not 0; "
            "routers report them to POST /api/activity"
        )
    return summary


def _raw_metrics(
    *,
    window: float,
    since: dt.datetime,
    now: dt.datetime,
    buckets: int,
    filters: dict[str, str],
) -> dict[str, Any]:
    rows = list(
        RequestRecord.objects.filter(timestamp__gt=since, timestamp__lte=now, **filters)
        .order_by()
        .values_list(
            "node",
            "model",
            "app_id",
            "latency_ms",
            "ok",
            "completion_tokens",
            "timestamp",
            named=True,
        )
    )
    groups: dict[str, dict[str, list]] = {"node": {}, "model": {}, "app": {}}
    for row in rows:
        for key, value in (
            ("node", row.node),
            ("model", row.model),
            ("app", row.app_id),
        ):
            groups[key].setdefault(value, []).append(row)
    return {
        "window_seconds": window,
        "since": since.timestamp(),
        "until": now.timestamp(),
        "answered_from": "requests",
        "resolution_seconds": None,
        "percentiles": "exact",
        "totals": _analyse(rows, window),
        "per_node": _breakdown(groups["node"], window, "node"),
        "per_model": _breakdown(groups["model"], window, "model"),
        "per_application": _breakdown(groups["app"], window, "app_id"),
        **_series(rows, since=since, now=now, buckets=buckets),
    }


def _breakdown(groups: dict[str, list], window: float, label: str) -> list[dict]:
    return [
        {label: key, **_analyse(rows, window)}
        for key, rows in sorted(groups.items(), key=lambda item: -len(item[1]))
    ]


def _analyse(rows: list[tuple], window: float) -> dict[str, Any]:
    latencies = sorted(row.latency_ms for row in rows)
    failed = sum(1 for row in rows if not row.ok)
    tokens = [row for row in rows if row.completion_tokens is not None]
    token_seconds = sum(row.latency_ms for row in tokens) / 1000
    return {
        "requests": len(rows),
        "errors": failed,
        "requests_per_second": round(len(rows) / window, 4),
        "success_rate": round(1 - failed / len(rows), 4) if rows else None,
        "latency_ms": {
            "p50": _percentile(latencies, 0.50),
            "p95": _percentile(latencies, 0.95),
            "p99": _percentile(latencies, 0.99),
            "mean": round(sum(latencies) / len(latencies), 2) if latencies else None,
        },
        # Completion tokens per second of request time, over the requests that said
        # how many tokens they made.
        "tokens_per_second": (
            round(sum(row.completion_tokens for row in tokens) / token_seconds, 2)
            if token_seconds > 0
            else None
        ),
        "completion_tokens": (
            sum(row.completion_tokens for row in tokens) if tokens else None
        ),
    }


def _series(
    rows: list[tuple], *, since: dt.datetime, now: dt.datetime, buckets: int
) -> dict[str, Any]:
    """Return the window as a time series of fixed-width buckets.

    Bucket k holds the requests that finished in (k·width, (k+1)·width] since the
    Unix epoch, so a bucket keeps its edges (and its numbers) from one request to
    the next while the window moves on. The first and last buckets are cut at the
    window's edges: together the buckets hold exactly the window's requests (one
    more bucket than asked for when the window does not start on an edge). A
    bucket without requests says null, not 0.
    """
    span = (now - since) // _MICROSECOND  # whole microseconds, so edges are exact
    since_us = (since - _EPOCH) // _MICROSECOND
    now_us = since_us + span

    def index(microseconds: int) -> int:
        return -(-microseconds * buckets // span) - 1  # ceil(t / width) - 1

    first, last = index(since_us + 1), index(now_us)
    latencies: list[list[float]] = [[] for _ in range(first, last + 1)]
    errors = [0] * len(latencies)
    for row in rows:
        finished = (row.timestamp - _EPOCH) // _MICROSECOND
        k = min(max(index(finished), first), last) - first
        latencies[k].append(row.latency_ms)
        errors[k] += not row.ok
    series = []
    for k, (values, failed) in enumerate(zip(latencies, errors, strict=True)):
        start = max(since_us, (first + k) * span / buckets)
        end = min(now_us, (first + k + 1) * span / buckets)
        values.sort()
        series.append(
            {
                "start": start / 1e6,
                "end": end / 1e6,
                "requests": len(values),
                "errors": failed,
                "latency_ms": {
                    "p50": _percentile(values, 0.50),
                    "p95": _percentile(values, 0.95),
                    "p99": _percentile(values, 0.99),
                },
            }
        )
    return {"bucket_seconds": span / buckets / 1e6, "series": series}


def _percentile(ordered: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, like numpy's default."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return round(value, 2)

"""GET /api/prometheus: the fleet's metrics, read from the database at scrape time.

Every value comes from rows any server process can read, so N dashboard processes
behind a proxy all answer the same scrape; no counter lives in one process's memory.

The event log knows no domain: each app registers a collector, beside the models
it reads (network/metrics.py, applications/metrics.py, frameworks/metrics.py), and
a scrape joins them. Activity's own families are the event counters, the
routers' request metrics and the gateway's (from its requests' totals). Nodes
are labelled ``node="host:port"``, as activity events and router reports name
them, so request metrics join node metrics on that label. The text format is
written by core.prometheus.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from activity.metrics import LATENCY_BUCKETS
from activity.models import (
    BUCKET_FIELDS,
    LATENCY_BOUNDS_MS,
    EventCount,
    GatewayTotals,
    RequestTotals,
)
from core.prometheus import Family, escape, integer

Collector = Callable[[], Iterable[Family]]

_collectors: list[Collector] = []


def register(collector: Collector) -> Collector:
    """Add a collector to every scrape (once, whatever ready() runs twice)."""
    if collector not in _collectors:
        _collectors.append(collector)
    return collector


def exposition() -> bytes:
    """Return the fleet's metrics in the Prometheus text format, version 0.0.4."""
    lines = [
        line
        for collector in _collectors
        for family in collector()
        for line in family.lines
    ]
    # A lone surrogate (JSON allows "\ud800") cannot be UTF-8: write "?" for it.
    return "".join(lines).encode("utf-8", "replace")


def events() -> Iterator[Family]:
    family = Family(
        "sollol_events_total",
        "counter",
        "Events ever written to the event log, by stream and type.",
    )
    rows = EventCount.objects.order_by("stream", "type").values_list(
        "stream", "type", "count"
    )
    for stream, type, count in rows:
        family.add(f'stream="{escape(stream)}",type="{escape(type)}"', count)
    yield family


def router() -> Iterator[Family]:
    requests = Family(
        "sollol_router_requests_total",
        "counter",
        "Inference requests routers and applications reported.",
    )
    errors = Family(
        "sollol_router_request_errors_total",
        "counter",
        "Reported inference requests that failed.",
    )
    tokens = Family(
        "sollol_router_tokens_total",
        "counter",
        "Tokens of reported requests, by type (prompt or completion).",
    )
    duration = Family(
        "sollol_router_request_duration_seconds",
        "histogram",
        "Latency of reported inference requests.",
    )
    bucket_labels = [f',le="{float(bound)!r}"}} ' for bound in LATENCY_BUCKETS]
    bucket_labels.append(',le="+Inf"} ')
    rows = RequestTotals.objects.order_by("node", "model").values_list(
        "node", "model", "requests", "errors", "latency_seconds_sum",
        "prompt_tokens", "completion_tokens", "buckets",
    )  # fmt: skip
    for node, model, count, failed, seconds, prompt, completion, buckets in rows:
        label = f'node="{escape(node)}",model="{escape(model)}"'
        requests.add(label, count)
        errors.add(label, failed)
        tokens.add(f'{label},type="prompt"', prompt)
        tokens.add(f'{label},type="completion"', completion)
        _observe(
            duration, label, bucket_labels, _cumulative(buckets, len(bucket_labels))
        )
        duration.add(label, seconds, "_sum")
    yield from (requests, errors, tokens, duration)


def gateway() -> Iterator[Family]:
    """What went through the gateway (GatewayTotals), never what was reported."""
    requests = Family(
        "sollol_gateway_requests_total",
        "counter",
        "Requests the gateway forwarded, by node, model and the HTTP status its "
        "client got.",
    )
    duration = Family(
        "sollol_gateway_request_duration_seconds",
        "histogram",
        "Time from a request's arrival at the gateway to the end of its reply, "
        "waiting for a free slot of the node included.",
    )
    prompt = Family(
        "sollol_gateway_prompt_tokens_total",
        "counter",
        "Prompt tokens of requests through the gateway, as the nodes counted them.",
    )
    completion = Family(
        "sollol_gateway_completion_tokens_total",
        "counter",
        "Completion tokens of requests through the gateway, as the nodes counted them.",
    )
    rows = GatewayTotals.objects.order_by("node", "model", "status_code").values_list(
        "node", "model", "status_code", "requests", "latency_seconds_sum",
        "prompt_tokens", "completion_tokens", *BUCKET_FIELDS,
    )  # fmt: skip
    for (node, model), group in itertools.groupby(rows, key=lambda row: row[:2]):
        label = f'node="{escape(node)}",model="{escape(model)}"'
        counts = [0] * len(BUCKET_FIELDS)
        seconds = tokens_in = tokens_out = 0
        for row in group:
            requests.add(f'{label},status="{row[2]}"', row[3])
            seconds += row[4]
            tokens_in += row[5]
            tokens_out += row[6]
            counts = [a + b for a, b in zip(counts, row[7:], strict=True)]
        _observe(duration, label, _GATEWAY_LE, list(itertools.accumulate(counts)))
        duration.add(label, float(seconds), "_sum")
        prompt.add(label, tokens_in)
        completion.add(label, tokens_out)
    yield from (requests, duration, prompt, completion)


_GATEWAY_LE = [f',le="{bound / 1000!r}"}} ' for bound in LATENCY_BOUNDS_MS]
_GATEWAY_LE.append(',le="+Inf"} ')


def _observe(
    family: Family, label: str, le_labels: list[str], cumulative: list[int]
) -> None:
    """Add a histogram's _bucket lines (cumulative, +Inf last) and its _count."""
    family.lines += [
        f"{family.name}_bucket{{{label}{le}{n}\n"
        for le, n in zip(le_labels, cumulative, strict=True)
    ]
    family.add(label, cumulative[-1], "_count")


def _cumulative(buckets: Any, size: int) -> list[int]:
    """Return the running totals of a stored (non-cumulative) bucket list.

    The last is the count of every request, the +Inf bucket. A list of another
    length (written before the bounds changed) counts its extra entries as beyond
    the last bound and its missing ones as 0.
    """
    counts = [integer(n) or 0 for n in buckets] if type(buckets) is list else []
    finite = counts[: size - 1] + [0] * (size - 1 - len(counts))
    running, result = 0, []
    for count in finite:
        running += count
        result.append(running)
    result.append(running + sum(counts[size - 1 :]))
    return result

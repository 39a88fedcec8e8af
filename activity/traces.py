"""Distributed traces: validated spans in, trace summaries and span trees out.

Spans arrive from three places (native JSON on POST /api/traces, OTLP/HTTP JSON and
protobuf on POST /v1/traces, see activity.otlp); all of them become SpanIn values
here and are written by ingest_spans(), the one function that stores spans. A trace
is never stored whole: its spans come from several services, in several batches,
in any order, and sometimes twice. So each batch locks the summaries of its traces,
adds the spans it brings (ignoring ones already stored) and recomputes those
summaries from the stored spans.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet, RowRange, Sum, Window

from activity import streams
from activity.choices import SpanKind, SpanStatus
from activity.models import Span, Trace
from core import realtime, validators
from core.db import insert_values
from core.jsonio import PayloadError, check_document

HEX_TRACE_ID = re.compile(r"[0-9a-f]{32}")
HEX_SPAN_ID = re.compile(r"[0-9a-f]{16}")
ZERO_TRACE_ID = "0" * 32
ZERO_SPAN_ID = "0" * 16

UNKNOWN_SERVICE = "unknown_service"  # what OpenTelemetry SDKs call a nameless one
MAX_ATTRIBUTE_DEPTH = 8
MAX_STATUS_MESSAGE = 4000
# Older than this, or later than int64 nanoseconds reach, is a broken clock or a
# unit mix-up (milliseconds sent as seconds), not a span.
MIN_TIME_NS = 946_684_800 * 10**9  # 2000-01-01
MAX_TIME_NS = 2**63 - 1
# Chunk for `__in` lists: well under every backend's limit of bound parameters.
CHUNK = 500
# Trace ids named in one "traces" sample (a bound, not a page).
SAMPLE_TRACE_IDS = 100

# A tree deeper than this is not a real call chain; deeper spans are shown at the
# top level rather than nesting the response until JSON encoders give up.
MAX_TREE_DEPTH = 100
MAX_TREE_SPANS = 10_000

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})"  # date and time
    r"(?:\.(\d{1,9})\d*)?"  # fraction: nanoseconds kept, the rest dropped
    r"([Zz]|[+-]\d{2}:\d{2})"  # offset, required
)


@dataclass(frozen=True)
class SpanIn:
    """A span that passed validation, whatever protocol it came in."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    status: str = SpanStatus.UNSET
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        """Return the Span row's values (core.db.insert_values)."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "service": self.service,
            "kind": self.kind,
            "start": time_from_ns(self.start_ns),
            "end": time_from_ns(self.end_ns),
            "duration_ms": (self.end_ns - self.start_ns) / 1e6,
            "status": self.status,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "events": self.events,
        }


# --- validation shared by every protocol ------------------------------------------


def parse_trace_id(value: Any, field: str = "trace_id") -> str:
    """Return a trace id as 32 lowercase hex digits, or raise PayloadError."""
    if not isinstance(value, str) or not HEX_TRACE_ID.fullmatch(value.lower()):
        raise PayloadError(f"{field} must be 32 hexadecimal digits")
    if value == ZERO_TRACE_ID:
        raise PayloadError(f"{field} must not be all zeros")
    return value.lower()


def parse_span_id(value: Any, field: str = "span_id", *, parent: bool = False) -> str:
    """Return a span id as 16 lowercase hex digits ("" for a parent that is none)."""
    if parent and value in (None, "", ZERO_SPAN_ID):
        return ""
    if not isinstance(value, str) or not HEX_SPAN_ID.fullmatch(value.lower()):
        raise PayloadError(f"{field} must be 16 hexadecimal digits")
    if value == ZERO_SPAN_ID:
        raise PayloadError(f"{field} must not be all zeros")
    return value.lower()


def time_from_ns(ns: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


def check_time_ns(ns: int, field: str) -> int:
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise PayloadError(f"{field} is not a plausible time (before 2000 or too far)")
    return ns


def _time_ns(value: Any, field: str) -> int:
    """Return Unix nanoseconds from Unix seconds (a number) or an RFC 3339 string."""
    if isinstance(value, bool):
        raise PayloadError(f"{field} must be Unix seconds or an RFC 3339 time")
    if isinstance(value, int | float):
        nanoseconds = value * 1_000_000_000
        if not math.isfinite(nanoseconds):  # json reads 1e400 as infinity
            raise PayloadError(f"{field} must be a finite number of seconds")
        return check_time_ns(round(nanoseconds), field)
    if isinstance(value, str):
        match = RFC3339.fullmatch(value.strip())
        if match:
            date, clock, fraction, offset = match.groups()
            offset = "+00:00" if offset in ("Z", "z") else offset
            try:
                whole = dt.datetime.fromisoformat(f"{date}T{clock}{offset}")
            except ValueError:
                raise PayloadError(f"{field} is not a valid time: {value!r}") from None
            nanos = int((fraction or "").ljust(9, "0"))
            return check_time_ns(int(whole.timestamp()) * 10**9 + nanos, field)
    raise PayloadError(f"{field} must be Unix seconds or an RFC 3339 time")


def make_span(
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str,
    name: Any,
    service: Any,
    kind: str,
    start_ns: int,
    end_ns: int,
    status: str,
    status_message: Any,
    attributes: Any,
    events: list[dict[str, Any]],
) -> SpanIn:
    """Check what every protocol shares and return the SpanIn."""
    if end_ns < start_ns:
        raise PayloadError("the span ends before it starts")
    if parent_span_id == span_id:
        raise PayloadError("a span cannot be its own parent")
    if not isinstance(attributes, dict):
        raise PayloadError("attributes must be an object")
    check_document(attributes, "attributes", max_depth=MAX_ATTRIBUTE_DEPTH)
    check_document(events, "events", max_depth=MAX_ATTRIBUTE_DEPTH + 2)
    return SpanIn(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=validators.text(
            name,
            "name",
            max_length=Span._meta.get_field("name").max_length,
            longer="cut",
        ),
        service=validators.text(
            service,
            "service",
            max_length=Span._meta.get_field("service").max_length,
            default=UNKNOWN_SERVICE,
            longer="cut",
        )
        or UNKNOWN_SERVICE,
        kind=kind,
        start_ns=start_ns,
        end_ns=end_ns,
        status=status,
        status_message=validators.text(
            status_message,
            "status message",
            max_length=MAX_STATUS_MESSAGE,
            longer="cut",
        ),
        attributes=attributes,
        events=events,
    )


# --- native JSON spans (POST /api/traces) -------------------------------------------


def _native_kind(value: Any) -> str:
    if value is None:
        return SpanKind.INTERNAL
    if isinstance(value, str):
        kind = value.lower().removeprefix("span_kind_")
        if kind in SpanKind.values:
            return kind
    raise PayloadError(f"kind must be one of {', '.join(SpanKind.values)}")


def _native_status(span: dict) -> tuple[str, Any]:
    status, message = span.get("status"), span.get("status_message")
    if isinstance(status, dict):
        status, message = status.get("code"), status.get("message", message)
    if status is None:
        return SpanStatus.UNSET, message
    if isinstance(status, str):
        code = status.lower().removeprefix("status_code_")
        if code in SpanStatus.values:
            return code, message
    raise PayloadError('status must be "ok", "error" or "unset"')


def _native_events(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError("events must be a list")
    events = []
    for index, event in enumerate(value):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            raise PayloadError(f"{where} must be an object")
        attributes = event.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise PayloadError(f"{where}.attributes must be an object")
        when = event.get("timestamp", event.get("time"))
        events.append(
            {
                "name": validators.text(
                    event.get("name"), f"{where}.name", max_length=500, longer="cut"
                ),
                "timestamp": _time_ns(when, f"{where}.timestamp") / 1e9,
                "attributes": attributes,
            }
        )
    return events


def parse_native_span(span: Any, *, default_service: Any = None) -> SpanIn:
    """Validate one native span object into a SpanIn."""
    if not isinstance(span, dict):
        raise PayloadError("a span must be an object")
    name = span.get("name")
    if not isinstance(name, str) or not name:
        raise PayloadError("name is required")
    status, status_message = _native_status(span)
    return make_span(
        trace_id=parse_trace_id(span.get("trace_id")),
        span_id=parse_span_id(span.get("span_id")),
        parent_span_id=parse_span_id(
            span.get("parent_span_id"), "parent_span_id", parent=True
        ),
        name=name,
        service=span.get("service") or default_service,
        kind=_native_kind(span.get("kind")),
        start_ns=_time_ns(span.get("start"), "start"),
        end_ns=_time_ns(span.get("end"), "end"),
        status=status,
        status_message=status_message,
        attributes=span.get("attributes") or {},
        events=_native_events(span.get("events")),
    )


def parse_native(data: Any) -> list[SpanIn]:
    """Validate a native body: a list of spans or {"spans": [...], "service": ...}.

    One bad span refuses the whole batch, naming it: our own clients send valid
    spans, so a bad one is a bug worth a loud answer, not a silent drop.
    """
    default_service = None
    if isinstance(data, dict):
        default_service = data.get("service")
        data = data.get("spans")
    if not isinstance(data, list):
        raise PayloadError('the body must be a list of spans or {"spans": [...]}')
    spans = []
    for index, span in enumerate(data):
        try:
            spans.append(parse_native_span(span, default_service=default_service))
        except PayloadError as exc:
            raise PayloadError(f"spans[{index}]: {exc}") from None
    return spans


# --- writes -------------------------------------------------------------------------


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for offset in range(0, len(items), CHUNK):
        yield items[offset : offset + CHUNK]


def ingest_spans(spans: Sequence[SpanIn], *, now: dt.datetime) -> int:
    """Store spans, skipping ones already stored; return how many were given.

    Re-exporting a batch (an SDK retrying after a timeout) stores nothing twice:
    (trace_id, span_id) is unique and the first copy wins.

    A trace first seen in this batch (most of them: a gateway's request is a trace
    of its own) gets its summary from the batch at once, inserted with it; only
    traces that had spans before are summarised again from the database.
    """
    if not spans:
        return 0
    unique = list({(span.trace_id, span.span_id): span for span in spans}.values())
    by_trace: dict[str, list[SpanIn]] = {}
    for span in unique:
        by_trace.setdefault(span.trace_id, []).append(span)
    trace_ids = sorted(by_trace)
    older: list[str] = []  # traces with spans from before this batch
    with transaction.atomic():
        for chunk in _chunks(trace_ids):
            insert_values(
                Trace,
                [_fresh_summary(by_trace[trace_id], now) for trace_id in chunk],
                ignore_conflicts=True,
            )
            # Lock the summaries (in one order, no deadlocks): a concurrent batch
            # of the same trace then waits, and recomputes after seeing ours. A
            # row this batch inserted says so: received now, with its span count.
            for trace_id, received, count in (
                Trace.objects.select_for_update()
                .filter(trace_id__in=chunk)
                .order_by("trace_id")
                .values_list("trace_id", "received", "span_count")
            ):
                if received != now or count != len(by_trace[trace_id]):
                    older.append(trace_id)
        insert_values(Span, [span.as_row() for span in unique], ignore_conflicts=True)
        for chunk in _chunks(older):
            _summarize(chunk, now=now)
        transaction.on_commit(lambda: publish_trace_samples(trace_ids, now=now))
    return len(spans)


def _fresh_summary(spans: list[SpanIn], now: dt.datetime) -> dict[str, Any]:
    """Return the summary row of a trace whose spans are all these (see _summarize)."""
    ordered = sorted(spans, key=lambda span: span.start_ns)  # stable: batch order
    root = next((span for span in ordered if not span.parent_span_id), None)
    first = time_from_ns(min(span.start_ns for span in spans))
    last = time_from_ns(max(span.end_ns for span in spans))
    return {
        "trace_id": spans[0].trace_id,
        "root_span_id": root.span_id if root else "",
        "root_name": (root or ordered[0]).name,
        "root_service": (root or ordered[0]).service,
        "services": sorted({span.service for span in spans}),
        "start": first,
        "end": last,
        "duration_ms": (last - first).total_seconds() * 1000,
        "span_count": len(spans),
        "error_count": sum(1 for span in spans if span.status == SpanStatus.ERROR),
        "received": now,
    }


def publish_trace_samples(trace_ids: Sequence[str], *, now: dt.datetime) -> None:
    """Tell viewers (/ws/ollama_activity?samples=1) which traces just got spans.

    Spans make no events (far too many); the page's trace list follows these
    samples instead of asking on a timer.
    """
    realtime.publish_samples(
        streams.MODEL_ACTIVITY,
        {
            "traces": list(trace_ids[:SAMPLE_TRACE_IDS]),
            "traces_total": len(trace_ids),
            "at": now.timestamp(),
        },
    )


def _summarize(trace_ids: Sequence[str], *, now: dt.datetime) -> None:
    """Recompute the summaries of trace_ids from their stored spans."""
    spans = Span.objects.filter(trace_id__in=trace_ids).order_by()
    totals = {
        row["trace_id"]: row
        for row in spans.values("trace_id").annotate(
            span_count=Count("id"),
            first_start=Min("start"),
            last_end=Max("end"),
            error_count=Count("id", filter=Q(status=SpanStatus.ERROR)),
        )
    }
    services: dict[str, set[str]] = {}
    for trace_id, service in spans.values_list("trace_id", "service").distinct():
        services.setdefault(trace_id, set()).add(service)
    roots: dict[str, tuple[str, str, str]] = {}
    # The root is the span without a parent; until it arrives, the earliest span
    # stands in for it, so the list never shows a nameless trace.
    for trace_id, span_id, name, service in (
        spans.filter(parent_span_id="")
        .order_by("start", "id")
        .values_list("trace_id", "span_id", "name", "service")
    ):
        roots.setdefault(trace_id, (span_id, name, service))
    for trace_id in set(totals) - set(roots):
        earliest = (
            Span.objects.filter(trace_id=trace_id)
            .order_by("start", "id")
            .values_list("name", "service")
            .first()
        )
        roots[trace_id] = ("", *earliest)
    summaries = []
    for trace_id, row in totals.items():
        root_span_id, root_name, root_service = roots[trace_id]
        summaries.append(
            Trace(
                trace_id=trace_id,
                root_span_id=root_span_id,
                root_name=root_name,
                root_service=root_service,
                services=sorted(services.get(trace_id, ())),
                start=row["first_start"],
                end=row["last_end"],
                duration_ms=(row["last_end"] - row["first_start"]).total_seconds()
                * 1000,
                span_count=row["span_count"],
                error_count=row["error_count"],
                received=now,
            )
        )
    Trace.objects.bulk_create(
        summaries,
        update_conflicts=True,
        unique_fields=["trace_id"],
        update_fields=[
            "root_span_id",
            "root_name",
            "root_service",
            "services",
            "start",
            "end",
            "duration_ms",
            "span_count",
            "error_count",
            "received",
        ],
    )


def prune_traces(*, now: dt.datetime, max_age: float, max_count: int) -> int:
    """Delete whole traces idle longer than max_age seconds or beyond max_count spans.

    The count keeps the newest traces (by arrival) whose spans add up to at most
    max_count; a trace is removed whole, never leaving a tree with holes.
    Return how many spans were deleted.
    """
    cutoff = now - dt.timedelta(seconds=max_age)
    doomed = set(
        Trace.objects.filter(received__lt=cutoff).values_list("trace_id", flat=True)
    )
    newest_first = [F("received").desc(), F("id").desc()]
    doomed.update(
        Trace.objects.annotate(
            spans_so_far=Window(
                Sum("span_count"),
                order_by=newest_first,
                frame=RowRange(start=None, end=0),
            )
        )
        .filter(spans_so_far__gt=max_count)
        .values_list("trace_id", flat=True)
    )
    deleted = 0
    for chunk in _chunks(sorted(doomed)):
        with transaction.atomic():
            # Same lock order as ingest: a batch for one of these traces waits and
            # then starts the trace afresh.
            list(
                Trace.objects.select_for_update()
                .filter(trace_id__in=chunk)
                .order_by("trace_id")
                .values_list("id", flat=True)
            )
            deleted += Span.objects.filter(trace_id__in=chunk).delete()[0]
            Trace.objects.filter(trace_id__in=chunk).delete()
    return deleted


# --- reads --------------------------------------------------------------------------


def trace_data(trace: Trace) -> dict[str, Any]:
    """Return a trace as GET /api/traces lists it."""
    return {
        "trace_id": trace.trace_id,
        "root_span_id": trace.root_span_id or None,
        "root_name": trace.root_name,
        "root_service": trace.root_service,
        "services": trace.services,
        "start": trace.start.timestamp(),
        "end": trace.end.timestamp(),
        "duration_ms": round(trace.duration_ms, 3),
        "span_count": trace.span_count,
        "error_count": trace.error_count,
        "error": trace.error_count > 0,
    }


def matching_traces(
    *, service: str | None = None, min_duration_ms: float | None = None
) -> QuerySet[Trace]:
    """Return the traces newest first (by start), optionally of one service (a
    span of it) or slow ones."""
    traces = Trace.objects.all()
    if service:
        traces = traces.filter(
            trace_id__in=Span.objects.filter(service=service).values("trace_id")
        )
    if min_duration_ms:
        traces = traces.filter(duration_ms__gte=min_duration_ms)
    return traces.order_by("-start", "-id")


def recent_traces(*, limit: int) -> list[Trace]:
    """Return the newest traces (by start)."""
    return list(matching_traces()[:limit])


def span_data(span: Span) -> dict[str, Any]:
    return {
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None,
        "name": span.name,
        "service": span.service,
        "kind": span.kind,
        "start": span.start.timestamp(),
        "end": span.end.timestamp(),
        "duration_ms": round(span.duration_ms, 6),
        "status": span.status,
        "status_message": span.status_message,
        "attributes": span.attributes,
        "events": span.events,
    }


def trace_tree(trace_id: str) -> dict[str, Any] | None:
    """Return the trace with its spans nested under their parents, or None.

    Children are ordered by start. A span whose parent never arrived (or that
    sits in a parent cycle, or absurdly deep) is shown at the top level with
    "orphan": true, so every stored span appears exactly once.
    """
    trace = Trace.objects.filter(trace_id=trace_id).first()
    if trace is None:
        return None
    spans = list(
        Span.objects.filter(trace_id=trace_id).order_by("start", "id")[
            : MAX_TREE_SPANS + 1
        ]
    )
    truncated = len(spans) > MAX_TREE_SPANS
    spans = spans[:MAX_TREE_SPANS]
    nodes = {
        span.span_id: {**span_data(span), "orphan": False, "children": []}
        for span in spans
    }
    top: list[dict[str, Any]] = []
    parent_of: dict[str, str] = {}
    for span in spans:
        node = nodes[span.span_id]
        if span.parent_span_id in nodes:
            nodes[span.parent_span_id]["children"].append(node)
            parent_of[span.span_id] = span.parent_span_id
        else:
            node["orphan"] = bool(span.parent_span_id)
            top.append(node)
    _place_unreachable(spans, nodes, parent_of, top)
    return {**trace_data(trace), "truncated": truncated, "spans": top}


def _place_unreachable(
    spans: Iterable[Span],
    nodes: dict[str, dict[str, Any]],
    parent_of: dict[str, str],
    top: list[dict[str, Any]],
) -> None:
    """Move spans that the top level cannot reach, or reaches too deep, to the top."""
    reached: set[str] = set()

    def walk(start: dict[str, Any]) -> None:
        stack = [(start, 0)]
        while stack:
            node, level = stack.pop()
            reached.add(node["span_id"])
            for child in list(node["children"]):
                if level + 1 >= MAX_TREE_DEPTH:
                    node["children"].remove(child)
                    _to_top(child, top)
                    stack.append((child, 0))
                else:
                    stack.append((child, level + 1))

    for node in list(top):
        walk(node)
    for span in spans:
        if span.span_id not in reached:
            # Part of a parent cycle: cut it loose where it is first met.
            node = nodes[span.span_id]
            nodes[parent_of[span.span_id]]["children"].remove(node)
            _to_top(node, top)
            walk(node)
    top.sort(key=lambda node: node["start"])


def _to_top(node: dict[str, Any], top: list[dict[str, Any]]) -> None:
    node["orphan"] = True
    top.append(node)

"""Every request through the gateway becomes a request record, totals and activity.

The serving loop keeps only a small `Row` of each finished exchange and hands the
rows over every quarter second, never on the request's way: a reply does not wait
for the database, and the work of turning rows into request records, rollups,
spans and events is done elsewhere. By default (SOLLOL_GATEWAY_RECORDER=process)
that is a writer process of the gateway's own (writer_process.py), so the
database work does not take the serving loop's interpreter lock; with `thread`
it is the lean lane's writer thread (core.lean.writer) in this process, as the
in-process tests use it. model_processing events are announced per node and
model at most every SOLLOL_GATEWAY_EVENT_INTERVAL seconds, summing what came
meanwhile. When the writer falls far behind, rows are dropped and counted
(`dropped`) rather than the gateway's memory growing without bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from django.conf import settings

from activity import metrics, traces
from activity.models import RequestRecord
from activity.traces import SpanIn
from core.lean.writer import WriterBusy, WriterUnavailable, get_writer
from network.gateway import tracing
from network.gateway.usage import Usage, read_usage

if TYPE_CHECKING:
    from network.gateway.proxy import Exchange

logger = logging.getLogger(__name__)

FLUSH_EVERY = 0.25  # seconds
MAX_PENDING_BATCHES = 64
MAX_BUFFERED = 100_000  # rows waiting for a flush, at most


class Row(NamedTuple):
    """What is kept of one finished exchange: plain values, cheap to make and send."""

    endpoint: str
    openai: bool
    infer: bool  # work for a model (announced as model_processing)
    method: str
    app: str
    model: str
    node: str
    status: int
    error: str
    attempts: int
    tail: bytes  # the reply's last bytes: what it says it did
    trace: tuple[str, str, str, str] | None  # trace id, span id, parent, flags
    started_wall_ns: int
    total_s: float
    queue_s: float
    first_token_s: float | None  # since the start, when the first body bytes came
    streamed: bool  # the reply came as it was generated
    finished_at: float  # time.time()


# Rows to store, and rows whose model_processing event is due now.
Batch = tuple[list[Row], list[Row]]


def row_of(exchange: Exchange) -> Row:
    """Return the row of an exchange whose reply just ended."""
    finished = time.monotonic()
    trace = exchange.trace
    return Row(
        endpoint=exchange.endpoint.name,
        openai=exchange.endpoint.openai,
        infer=exchange.endpoint.kind == "infer",
        method=exchange.method,
        app=exchange.app,
        model=exchange.model or "",
        node=exchange.node,
        status=exchange.status,
        error=exchange.error,
        attempts=exchange.attempts,
        tail=exchange.tail,
        trace=None
        if trace is None
        else (trace.trace_id, trace.span_id, trace.parent_span_id, trace.flags),
        started_wall_ns=exchange.started_wall_ns,
        total_s=finished - exchange.started,
        queue_s=exchange.queue_seconds,
        first_token_s=None
        if exchange.first_token is None
        else exchange.first_token - exchange.started,
        streamed=exchange.streamed,
        finished_at=time.time(),
    )


def report_of(row: Row, usage: Usage) -> metrics.RequestReport:
    """Return the request record of one row."""
    ttft = None
    if row.first_token_s is not None:
        ttft = (row.first_token_s - row.queue_s) * 1000
    speed = usage.tokens_per_second
    if (
        speed is None
        and usage.completion_tokens
        and row.streamed
        and row.first_token_s is not None
    ):
        # The node did not say (the OpenAI-compatible API): from the first
        # token to the last as they came. A reply in one piece says nothing of
        # its speed (its first byte comes with its last).
        generating = row.total_s - row.first_token_s
        speed = usage.completion_tokens / generating if generating > 0 else None
    ok = 200 <= row.status < 400 and not row.error
    return metrics.RequestReport(
        node=row.node,
        model=row.model,
        latency_ms=row.total_s * 1000,
        ok=ok,
        app_id=row.app,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        error=row.error[:500],
        timestamp=dt.datetime.fromtimestamp(row.finished_at, dt.UTC),
        source=RequestRecord.Source.GATEWAY,
        endpoint=row.endpoint,
        status_code=row.status,
        queue_ms=row.queue_s * 1000,
        ttft_ms=ttft,
        tokens_per_second=speed,
    )


def span_of(row: Row, report: metrics.RequestReport, usage: Usage) -> SpanIn:
    """Return the gateway's span of the row's exchange (see tracing.py)."""
    assert row.trace is not None
    return tracing.span_of(
        tracing.Context(*row.trace),
        name=f"{row.endpoint} {row.model}".strip(),
        started_wall_ns=row.started_wall_ns,
        duration_s=row.total_s,
        ok=report.ok,
        error=report.error,
        attributes={
            "http.request.method": row.method,
            "http.response.status_code": row.status,
            "gen_ai.system": "ollama",
            "gen_ai.operation.name": row.endpoint,
            "gen_ai.request.model": row.model,
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "gen_ai.response.finish_reasons": (
                [usage.done_reason] if usage.done_reason else None
            ),
            "server.address": row.node,
            "sollol.app": row.app,
            "sollol.queue_ms": round(report.queue_ms or 0.0, 3),
            "sollol.ttft_ms": None
            if report.ttft_ms is None
            else round(report.ttft_ms, 3),
            "sollol.attempts": row.attempts,
        },
    )


def write_batches(batches: Sequence[Batch], now: dt.datetime) -> list[int]:
    """Store the batches' rows (records, rollups, spans) and announce what is due;
    return how many rows each batch had."""
    reports: list[metrics.RequestReport] = []
    spans: list[SpanIn] = []
    for rows, _ in batches:
        for row in rows:
            usage = read_usage(row.tail, openai=row.openai)
            report = report_of(row, usage)
            reports.append(report)
            if row.trace is not None:
                spans.append(span_of(row, report, usage))
    announced = [
        report_of(row, read_usage(row.tail, openai=row.openai))
        for _, due in batches
        for row in due
    ]
    metrics.record_requests(reports, now=now, events=announced)
    traces.ingest_spans(spans, now=now)
    return [len(rows) for rows, _ in batches]


class Sink(Protocol):
    """Where batches go: a writer thread here, or a writer process."""

    def start(self) -> None: ...

    async def send(self, batch: Batch) -> int:
        """Hand the batch on; return how many of its rows were dropped."""

    async def stop(self) -> None: ...


class ThreadSink:
    """The lean lane's writer thread of this process (core.lean.writer)."""

    def start(self) -> None:
        pass

    async def send(self, batch: Batch) -> int:
        writer = get_writer("gateway", write_batches, MAX_PENDING_BATCHES)
        try:
            await writer.submit(batch)
        except (WriterBusy, WriterUnavailable) as exc:
            logger.warning(
                "gateway: %d request records dropped (%s)",
                len(batch[0]),
                type(exc).__name__,
            )
            return len(batch[0])
        return 0

    async def stop(self) -> None:
        pass


def configured_sink() -> Sink:
    if settings.SOLLOL_GATEWAY_RECORDER == "process":
        from network.gateway.writer_process import ProcessSink

        return ProcessSink()
    return ThreadSink()


class Recorder:
    """Collects finished exchanges and hands them to the sink in the background."""

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink or configured_sink()
        self.pending: list[Row] = []
        self.unannounced: dict[tuple[str, str], list[Row]] = {}
        self.announced_at: dict[tuple[str, str], float] = {}
        self.dropped = 0
        self._task: asyncio.Task | None = None
        self._writes: set[asyncio.Task] = set()

    def start(self) -> None:
        if self._task is None:
            self.sink.start()
            self._task = asyncio.create_task(
                self._flush_often(), name="gateway-records"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush(final=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.sink.stop()

    def add(self, exchange: Exchange) -> None:
        """Keep one finished exchange (called as its reply ends)."""
        if not exchange.status or not settings.SOLLOL_GATEWAY_RECORD:
            return
        if len(self.pending) >= MAX_BUFFERED:
            self.dropped += 1
            return
        row = row_of(exchange)
        self.pending.append(row)
        if row.infer and row.node and row.model:
            self.unannounced.setdefault((row.node, row.model), []).append(row)

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        """Hand what has come to the sink (without waiting for it, unless final)."""
        now = time.monotonic()
        interval = settings.SOLLOL_GATEWAY_EVENT_INTERVAL
        due: list[Row] = []
        for key in list(self.unannounced):
            if final or now - self.announced_at.get(key, 0.0) >= interval:
                due += self.unannounced.pop(key)
                self.announced_at[key] = now
        if not self.pending and not due:
            return
        batch, self.pending = self.pending, []
        write = asyncio.ensure_future(self._send((batch, due)))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        if final:
            await write

    async def _send(self, batch: Batch) -> None:
        self.dropped += await self.sink.send(batch)

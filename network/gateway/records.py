"""Every request through the gateway becomes a request record, totals and activity.

Records are handed to the lean lane's writer thread (core.lean.writer) in
batches every quarter second, never on the request's way: a reply does not wait
for the database. model_processing events are announced per node and model at
most every SOLLOL_GATEWAY_EVENT_INTERVAL seconds, summing what came meanwhile.
When the writer falls far behind, records are dropped and counted
(`dropped`), rather than the gateway's memory growing without bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

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
MAX_BUFFERED = 100_000  # records waiting for a flush, at most


Batch = tuple[list[metrics.RequestReport], list[metrics.RequestReport], list[SpanIn]]


def _write(batches: Sequence[Batch], now: dt.datetime) -> list[int]:
    reports = [r for batch, _, _ in batches for r in batch]
    announced = [r for _, events, _ in batches for r in events]
    spans = [s for _, _, spans in batches for s in spans]
    metrics.record_requests(reports, now=now, events=announced)
    traces.ingest_spans(spans, now=now)
    return [len(batch) for batch, _, _ in batches]


def report_of(
    exchange: Exchange, usage: Usage, finished: float, now: dt.datetime
) -> metrics.RequestReport:
    """Return what is kept of one exchange."""
    total = finished - exchange.started
    ttft = None
    if exchange.first_token is not None:
        ttft = (exchange.first_token - exchange.started - exchange.queue_seconds) * 1000
    speed = usage.tokens_per_second
    if speed is None and usage.completion_tokens and exchange.first_token is not None:
        generating = finished - exchange.first_token
        speed = usage.completion_tokens / generating if generating > 0 else None
    ok = 200 <= exchange.status < 400 and not exchange.error
    return metrics.RequestReport(
        node=exchange.node,
        model=exchange.model or "",
        latency_ms=total * 1000,
        ok=ok,
        app_id=exchange.app,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        error=exchange.error[:500],
        timestamp=now,
        source=RequestRecord.Source.GATEWAY,
        endpoint=exchange.endpoint.name,
        status_code=exchange.status,
        queue_ms=exchange.queue_seconds * 1000,
        ttft_ms=ttft,
        tokens_per_second=speed,
    )


def span_of(exchange: Exchange, report: metrics.RequestReport, usage: Usage) -> SpanIn:
    """Return the gateway's span of the exchange (see tracing.py)."""
    assert exchange.trace is not None
    model = exchange.model or ""
    return tracing.span_of(
        exchange.trace,
        name=f"{exchange.endpoint.name} {model}".strip(),
        started_wall_ns=exchange.started_wall_ns,
        duration_s=report.latency_ms / 1000,
        ok=report.ok,
        error=report.error,
        attributes={
            "http.request.method": exchange.method,
            "http.response.status_code": exchange.status,
            "gen_ai.system": "ollama",
            "gen_ai.operation.name": exchange.endpoint.name,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "gen_ai.response.finish_reasons": (
                [usage.done_reason] if usage.done_reason else None
            ),
            "server.address": exchange.node,
            "sollol.app": exchange.app,
            "sollol.queue_ms": round(report.queue_ms or 0.0, 3),
            "sollol.ttft_ms": None
            if report.ttft_ms is None
            else round(report.ttft_ms, 3),
            "sollol.attempts": exchange.attempts,
        },
    )


class Recorder:
    """Collects finished exchanges and writes them in the background."""

    def __init__(self) -> None:
        self.pending: list[metrics.RequestReport] = []
        self.spans: list[SpanIn] = []
        self.unannounced: dict[tuple[str, str], list[metrics.RequestReport]] = {}
        self.announced_at: dict[tuple[str, str], float] = {}
        self.dropped = 0
        self._task: asyncio.Task | None = None
        self._writes: set[asyncio.Task] = set()

    def start(self) -> None:
        if self._task is None:
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

    def add(self, exchange: Exchange) -> None:
        """Keep one finished exchange (called as its reply ends)."""
        if not exchange.status or not settings.SOLLOL_GATEWAY_RECORD:
            return
        if len(self.pending) >= MAX_BUFFERED:
            self.dropped += 1
            return
        usage = read_usage(exchange.tail, openai=exchange.endpoint.openai)
        report = report_of(exchange, usage, time.monotonic(), timezone.now())
        self.pending.append(report)
        if exchange.trace is not None:
            self.spans.append(span_of(exchange, report, usage))
        if report.node and report.model and exchange.endpoint.kind == "infer":
            self.unannounced.setdefault((report.node, report.model), []).append(report)

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        """Hand what has come to the writer (without waiting for it, unless final)."""
        now = time.monotonic()
        interval = settings.SOLLOL_GATEWAY_EVENT_INTERVAL
        events: list[metrics.RequestReport] = []
        for key in list(self.unannounced):
            if final or now - self.announced_at.get(key, 0.0) >= interval:
                events += self.unannounced.pop(key)
                self.announced_at[key] = now
        if not self.pending and not events:
            return
        batch, self.pending = self.pending, []
        spans, self.spans = self.spans, []
        writer = get_writer("gateway", _write, MAX_PENDING_BATCHES)
        write = asyncio.ensure_future(self._submit(writer, batch, events, spans))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        if final:
            await write

    async def _submit(self, writer, batch, events, spans) -> None:
        try:
            await writer.submit((batch, events, spans))
        except (WriterBusy, WriterUnavailable) as exc:
            self.dropped += len(batch)
            logger.warning(
                "gateway: %d request records dropped (%s)",
                len(batch),
                type(exc).__name__,
            )

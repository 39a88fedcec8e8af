"""POST /api/activity and POST /api/logs on the lean lane (see core.lean).

OTLP's POST /v1/logs (activity.api.otlp) hands its lines to the same log writer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from activity import logs, metrics
from core import jsonio, ratelimit
from core.lean.http import lean_post, limited
from core.lean.writer import BatchWriter, get_writer

# Requests (each up to the body limit) that may wait for the log writer before new
# ones are refused with 503 and Retry-After.
MAX_PENDING_LOG_BATCHES = 256
MAX_PENDING_ACTIVITY_BATCHES = 256


def _write_requests(
    reports: Sequence[list[metrics.RequestReport]], now: dt.datetime
) -> list[int]:
    metrics.record_requests([r for report in reports for r in report], now=now)
    return [len(report) for report in reports]


def _write_logs(batches: Sequence[list[logs.LogLine]], now: dt.datetime) -> list[int]:
    logs.record_logs([line for batch in batches for line in batch], now=now)
    return [len(batch) for batch in batches]


async def _activity(body: bytes, scope: dict) -> tuple[int, dict[str, Any]]:
    reports = metrics.parse_activity(jsonio.loads(body))
    if refused := ratelimit.report_refusal(report.app_id for report in reports):
        raise limited(refused)
    writer = get_writer("activity", _write_requests, MAX_PENDING_ACTIVITY_BATCHES)
    accepted = await writer.submit(reports)
    return 200, {"status": "ok", "accepted": accepted}


def log_writer() -> BatchWriter:
    """Return the writer of log lines, the one for every lane that takes them."""
    return get_writer("logs", _write_logs, MAX_PENDING_LOG_BATCHES)


async def _logs(body: bytes, scope: dict) -> tuple[int, dict[str, Any]]:
    lines = logs.parse_logs(jsonio.loads(body))
    if refused := ratelimit.report_refusal(line.app_id for line in lines):
        raise limited(refused)
    accepted = await log_writer().submit(lines)
    return 200, {"status": "ok", "accepted": accepted}


routes = {
    "/api/activity": lean_post(_activity),
    "/api/logs": lean_post(_logs, reads_in_django=True),
}

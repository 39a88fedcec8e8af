"""Log lines from applications and from the dashboard itself: stored, then streamed.

Every line is a LogRecord row first; /ws/logs viewers read the rows, so each viewer
gets every line (fan-out through the channel layer, which only says "lines up to id
N are committed") and `?since=` replays what a viewer missed. Retention is bounded
by age and by count, and ingest refuses with 503 rather than queueing without
bound, so a flood of logs can exhaust neither memory nor the database.

Lines arrive as JSON on POST /api/logs (activity.api.ingest), as OTLP/HTTP on
POST /v1/logs (activity.otlp), and from the dashboard's own loggers
(activity.capture); all of them become LogLine values (make_line) and are stored
by record_logs().
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from activity import streams
from activity.models import LogRecord
from activity.services import prune_oldest
from core import realtime, validators
from core.jsonio import PayloadError, check_document, check_text

MAX_LINES_PER_BATCH = 5000
MAX_MESSAGE_CHARS = 16_384
EXTRA_MAX_DEPTH = 6
DASHBOARD_APP_ID = "sollol-dashboard"  # the dashboard's own log lines
# Ids of log lines must be handed out in commit order, as event ids are (see
# activity.services.EVENT_LOG_LOCK); a lock of their own keeps the two apart.
LOG_LOCK = 0x5011_0200

LEVELS = {
    "TRACE": 5,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}


@dataclass(frozen=True)
class LogLine:
    """One validated log line, before it is stored."""

    level: str
    levelno: int
    message: str
    logger: str = ""
    app_id: str = ""
    timestamp: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- input ----------------------------------------------------------------------


def parse_level(value: Any, field_name: str = "level") -> tuple[str, int]:
    """Return (name, number) of a level given by name ("warning") or number (30)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 100:
            raise PayloadError(f"{field_name} must be between 0 and 100")
        return _NAME_OF.get(value, f"LEVEL{value}"), value
    if isinstance(value, str) and value.strip().upper() in LEVELS:
        number = LEVELS[value.strip().upper()]
        return _NAME_OF[number], number
    raise PayloadError(
        f"{field_name} must be one of {', '.join(sorted(LEVELS))} or a number"
    )


_NAME_OF = {
    5: "TRACE",
    10: "DEBUG",
    20: "INFO",
    30: "WARNING",
    40: "ERROR",
    50: "CRITICAL",
}


def parse_logs(data: Any) -> list[LogLine]:
    """Return the lines of a POST /api/logs body.

    The body is a list of records, {"records": [...]} (optionally with an "app_id"
    for all of them), or one record.
    """
    default_app = ""
    if isinstance(data, dict) and "records" in data:
        default_app = validators.text(data.get("app_id"), "app_id", max_length=128)
        data = data["records"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise PayloadError("the body must be a list of log records")
    if len(data) > MAX_LINES_PER_BATCH:
        raise PayloadError(
            f"at most {MAX_LINES_PER_BATCH} records per request, got {len(data)}"
        )
    return [_parse_line(item, i, default_app) for i, item in enumerate(data)]


def _parse_line(item: Any, index: int, default_app: str) -> LogLine:
    where = f"records[{index}]."
    if not isinstance(item, dict):
        raise PayloadError(f"records[{index}] must be a JSON object")
    if not isinstance(item.get("message"), str):
        raise PayloadError(f"{where}message must be a string")
    level, levelno = parse_level(item.get("level", "INFO"), f"{where}level")
    return make_line(
        level=level,
        levelno=levelno,
        message=item["message"],
        logger=validators.text(item.get("logger"), f"{where}logger", max_length=200),
        app_id=validators.text(item.get("app_id"), f"{where}app_id", max_length=128)
        or default_app,
        timestamp=validators.timestamp(item.get("timestamp"), f"{where}timestamp"),
        extra=item.get("extra") or {},
        where=where,
    )


def make_line(
    *,
    level: str,
    levelno: int,
    message: str,
    logger: str,
    app_id: str,
    timestamp: dt.datetime | None,
    extra: Any,
    where: str = "",
) -> LogLine:
    """Check what every protocol shares (the message, extra) and return the LogLine.

    POST /api/logs and OTLP's /v1/logs (activity.otlp) both end here.
    """
    message = validators.text(
        message, f"{where}message", max_length=MAX_MESSAGE_CHARS, longer="ellipsis"
    )
    if not isinstance(extra, dict):
        raise PayloadError(f"{where}extra must be a JSON object")
    check_document(extra, f"{where}extra", max_depth=EXTRA_MAX_DEPTH)
    return LogLine(
        level=level,
        levelno=levelno,
        message=message,
        logger=logger,
        app_id=app_id,
        timestamp=timestamp,
        extra=extra,
    )


# --- writing --------------------------------------------------------------------


def record_logs(lines: Sequence[LogLine], *, now: dt.datetime) -> int:
    """Store lines in one transaction; viewers hear of them when it commits."""
    if not lines:
        return 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOG_LOCK])
        rows = LogRecord.objects.bulk_create(
            [
                LogRecord(
                    timestamp=line.timestamp or now,
                    level=line.level,
                    levelno=line.levelno,
                    logger=line.logger,
                    message=line.message,
                    app_id=line.app_id,
                    extra=line.extra,
                )
                for line in lines
            ]
        )
        newest = max(row.id for row in rows)
        transaction.on_commit(lambda: realtime.announce(streams.LOGS, newest))
    return len(rows)


def prune_logs(*, now: dt.datetime, max_age: float, max_count: int) -> int:
    """Delete lines older than max_age seconds, then all but the newest max_count."""
    return prune_oldest(LogRecord, now=now, max_age=max_age, max_count=max_count)


# --- reading --------------------------------------------------------------------


def log_message(row: Any) -> dict[str, Any]:
    """Return a line (a LogRecord or a row of COLUMNS) as /ws/logs and /api/logs do."""
    return {
        "id": row.id,
        "type": "log",
        "timestamp": row.timestamp.timestamp(),
        "level": row.level,
        "logger": row.logger,
        "message": row.message,
        "app_id": row.app_id,
        "extra": row.extra,
    }


COLUMNS = (
    "id",
    "timestamp",
    "level",
    "levelno",
    "logger",
    "message",
    "app_id",
    "extra",
)


@dataclass(frozen=True)
class LogFilter:
    """What a viewer or a GET /api/logs asked to see."""

    min_level: int = 0
    app_id: str | None = None
    search: str | None = None

    def matches(self, levelno: int, app_id: str, message: str) -> bool:
        return (
            levelno >= self.min_level
            and (self.app_id is None or app_id == self.app_id)
            and (self.search is None or self.search.lower() in message.lower())
        )

    def apply(self, rows):
        if self.min_level:
            rows = rows.filter(levelno__gte=self.min_level)
        if self.app_id is not None:
            rows = rows.filter(app_id=self.app_id)
        if self.search:
            rows = rows.filter(message__icontains=self.search)
        return rows


def parse_filter(query: dict[str, str]) -> LogFilter:
    """Return the filter of ?level=WARNING&app_id=...&q=... (PayloadError if bad)."""
    min_level = 0
    if query.get("level"):
        level = query["level"]
        # "²".isdigit() is true and int("²") fails: only ASCII digits are a number.
        numeric = level.isascii() and level.isdigit() and len(level) <= 3
        _, min_level = parse_level(int(level) if numeric else level)
    app_id = query.get("app_id")
    if app_id is not None:
        check_text(app_id, "app_id")
    search = query.get("q") or None
    if search is not None:
        check_text(search, "q")
    return LogFilter(min_level=min_level, app_id=app_id, search=search)


def rows_after(
    after_id: int, *, up_to: int | None = None, filter: LogFilter, limit: int
) -> list[tuple]:
    """Return the stored lines after after_id that pass filter, as COLUMNS rows."""
    rows = filter.apply(LogRecord.objects.filter(id__gt=after_id))
    if up_to is not None:
        rows = rows.filter(id__lte=up_to)
    return list(rows.order_by("id").values_list(*COLUMNS, named=True)[:limit])


def lines_after(
    after_id: int, *, up_to: int | None = None, filter: LogFilter, limit: int
) -> list[tuple[int, str]]:
    """Return (id, JSON text) of stored lines after after_id that pass filter."""
    return [
        (row.id, json.dumps(log_message(row), ensure_ascii=False))
        for row in rows_after(after_id, up_to=up_to, filter=filter, limit=limit)
    ]


def recent_lines(
    *, filter: LogFilter, limit: int, before_id: int | None = None
) -> list[dict[str, Any]]:
    """Return the newest lines that pass filter, oldest first."""
    rows = filter.apply(LogRecord.objects.all())
    if before_id is not None:
        rows = rows.filter(id__lt=before_id)
    newest = list(rows.order_by("-id").values_list(*COLUMNS, named=True)[:limit])
    return [log_message(row) for row in reversed(newest)]


def count_lines(*, filter: LogFilter) -> int:
    """Return how many stored lines pass filter."""
    return filter.apply(LogRecord.objects.all()).count()


def last_log_id() -> int:
    newest = LogRecord.objects.order_by("-id").values_list("id", flat=True).first()
    return newest or 0

"""The dashboard's own log records, shipped to the log table beside the apps' lines.

The handler only puts records on a bounded queue; one thread writes them in
batches. A request never waits for the database because it logged, a flood drops
records (counted) instead of growing memory, and the writer's own records (and the
database driver's) are never captured, so logging cannot recurse.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import threading
import time

from django.db import connection

from activity import logs

MAX_QUEUE = 10_000
BATCH = 2000
# uvicorn.access: `serve --access-log` is for log shippers on standard error; a
# row for every request would double the writes of a busy dashboard.
IGNORED_LOGGERS = ("django.db.backends", "activity.capture", "uvicorn.access")

_installed: DashboardLogHandler | None = None
_install_lock = threading.Lock()


class DashboardLogHandler(logging.Handler):
    """Queue records for the writer thread; never block, never recurse."""

    def __init__(self, level: int = logging.INFO, max_queue: int = MAX_QUEUE) -> None:
        super().__init__(level)
        self.dropped = 0
        self.written = 0
        self._max_queue = max_queue
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()
        self._stopping = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self._pid != os.getpid():
            # A forked child (a Celery pool process): the writer thread stayed in
            # the parent. Start afresh here.
            self._pid, self._thread = os.getpid(), None
            self._queue = queue.Queue(self._max_queue)
        if self._thread is not None and threading.current_thread() is self._thread:
            return
        if record.name.startswith(IGNORED_LOGGERS):
            return
        try:
            line = _line(record, self.format(record) if record.exc_info else None)
        except Exception:
            self.handleError(record)
            return
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1
            return
        if self._thread is None:
            self._start()

    def close(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        super().close()

    def _start(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="log-capture", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    batch = [self._queue.get(timeout=0.5)]
                except queue.Empty:
                    continue
                while len(batch) < BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                self._write(batch)
        finally:
            connection.close()

    def _write(self, batch: list[logs.LogLine]) -> None:
        from django.utils import timezone

        try:
            self.written += logs.record_logs(batch, now=timezone.now())
        except Exception:
            # The database is away: these lines are lost (counted), and the next
            # batch opens a new connection. Logging the failure would recurse.
            self.dropped += len(batch)
            connection.close()
            time.sleep(1.0)


def _storable(text: str) -> str:
    """Return text that every database can store (no NUL, no lone surrogate)."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _line(record: logging.LogRecord, formatted: str | None) -> logs.LogLine:
    message = formatted if formatted is not None else record.getMessage()
    level, levelno = logs.parse_level(max(0, min(record.levelno, 100)))
    return logs.LogLine(
        level=level,
        levelno=levelno,
        message=_storable(message)[: logs.MAX_MESSAGE_CHARS],
        logger=_storable(record.name)[:200],
        app_id=logs.DASHBOARD_APP_ID,
        timestamp=dt.datetime.fromtimestamp(record.created, tz=dt.UTC),
        extra={
            "module": _storable(record.module),
            "lineno": record.lineno,
            "process": record.process,
            "thread": _storable(record.threadName or ""),
        },
    )


def install(level: str | int = logging.INFO) -> DashboardLogHandler:
    """Attach the handler to the root logger once per process; return it."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = DashboardLogHandler(
                logging.getLevelName(level) if isinstance(level, str) else level
            )
            logging.getLogger().addHandler(_installed)
        return _installed

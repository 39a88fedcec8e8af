"""Group commit for the lean lane: one thread, one connection, one transaction a batch.

A lean handler (core.lean.http) parses and validates in the event loop, then hands
the item to a BatchWriter: one thread with one database connection that writes
everything that arrived together in one transaction and answers each request only
after that transaction committed. Under load, batches grow by themselves; alone, a
request waits for nothing but its own commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from core import jsonio

logger = logging.getLogger(__name__)

Flush = Callable[[Sequence[Any], dt.datetime], Sequence[Any]]

MAX_BATCH = 2000
_STOP = object()


class WriterUnavailable(Exception):
    """The batch could not be written (the database is down or refused it)."""


class WriterBusy(Exception):
    """More items wait to be written than the writer may hold; try again later."""


class BatchWriter:
    """Write items that arrive together in one transaction, in one thread."""

    def __init__(self, name: str, flush: Flush, max_pending: int | None = None) -> None:
        self.name = name
        self.flush = flush
        # Past this many waiting items, submit() refuses instead of queueing: a
        # flood must not grow the queue, and the memory it takes, without bound.
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"writer-{name}", daemon=True
        )
        self._thread.start()

    async def submit(self, item: Any) -> Any:
        """Queue item; return its result once the transaction holding it committed."""
        if self.max_pending is not None and self._queue.qsize() >= self.max_pending:
            raise WriterBusy(self.name)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((item, loop, future))
        return await future

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread and close its connection."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stopping = False
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stopping = True
                        break
                    batch.append(more)
                self._write(batch)
                if stopping:
                    return
        finally:
            connection.close()

    def _write(self, batch: list) -> None:
        outcomes = self._flush([item for item, _, _ in batch])
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_, loop, future), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:
                pass  # that loop has closed; nobody is waiting any more

    def _flush(self, items: list) -> list[tuple[bool, Any]]:
        return flush_items(self.name, self.flush, items)


def flush_items(name: str, flush: Flush, items: list) -> list[tuple[bool, Any]]:
    """Write items in one transaction; return (ok, result or exception) for each."""
    try:
        return [(True, result) for result in flush(items, timezone.now())]
    except (OperationalError, InterfaceError) as exc:
        logger.warning("%s writer: database unavailable: %s", name, exc)
        # Drop the broken connection; the next batch opens a new one.
        connection.close()
        return [(False, WriterUnavailable(str(exc)))] * len(items)
    except Exception as exc:
        if len(items) > 1:
            # One bad item must not fail the others that arrived with it.
            return [
                outcome
                for item in items
                for outcome in flush_items(name, flush, [item])
            ]
        if not (isinstance(exc, jsonio.PayloadError) or getattr(exc, "refusal", 0)):
            logger.exception("%s writer: could not write %r", name, items[0])
        return [(False, exc)]


def _settle(settled: list) -> None:
    for future, (ok, value) in settled:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


_writers: dict[str, BatchWriter] = {}
_writers_lock = threading.Lock()


def get_writer(name: str, flush: Flush, max_pending: int | None = None) -> BatchWriter:
    """Return the process's writer of that name, starting it on first use."""
    writer = _writers.get(name)
    if writer is None:
        with _writers_lock:
            writer = _writers.get(name)
            if writer is None:
                writer = _writers[name] = BatchWriter(name, flush, max_pending)
    return writer


def stop_writers() -> None:
    """Drain and stop every writer (server shutdown, end of a test)."""
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.stop()

"""The newest log lines of this server process, read and encoded once for all viewers.

With 50 viewers of /ws/logs, reading the database and encoding JSON per viewer
would do the same work 50 times. Each process keeps one tail instead: when lines
are announced, one reader fetches them (unfiltered, in id order) and encodes each
line once; viewers pick what passes their filter from memory. A viewer resuming
from before the tail's start replays from the database first.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import weakref

from channels.db import database_sync_to_async

from activity import logs
from activity.models import LogRecord

FETCH = 2000


class LogTail:
    """The lines after `start`, up to `high`, all of them, in id order."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self.start: int | None = None  # every line with start < id <= high is here
        self.high = 0
        self._ids: list[int] = []
        self._lines: list[tuple[int, str, str]] = []  # (levelno, app_id, message)
        self._texts: list[str] = []
        self._lock = asyncio.Lock()

    async def catch_up(self, up_to: int | None = None) -> None:
        """Read lines until high >= up_to (None: whatever is committed now)."""
        if self.start is not None and up_to is not None and up_to <= self.high:
            return
        async with self._lock:
            if self.start is None:
                self.start = self.high = await database_sync_to_async(
                    logs.last_log_id
                )()
                return
            if up_to is not None and up_to <= self.high:
                return
            while True:
                rows = await database_sync_to_async(_fetch)(self.high)
                for row in rows:
                    self._ids.append(row.id)
                    self._lines.append((row.levelno, row.app_id, row.message))
                    self._texts.append(
                        json.dumps(logs.log_message(row), ensure_ascii=False)
                    )
                if rows:
                    self.high = rows[-1].id
                if len(rows) < FETCH:
                    break
            self._trim()

    def after(self, after_id: int, filter: logs.LogFilter) -> tuple[list, int]:
        """Return ([(id, text)] past after_id that pass filter, high) from memory."""
        first = bisect.bisect_right(self._ids, after_id)
        chosen = [
            (self._ids[i], self._texts[i])
            for i in range(first, len(self._ids))
            if filter.matches(*self._lines[i])
        ]
        return chosen, self.high

    def _trim(self) -> None:
        # Cut in halves, not line by line: slicing lists is cheap done rarely.
        if len(self._ids) > 2 * self.capacity:
            cut = len(self._ids) - self.capacity
            self.start = self._ids[cut - 1]
            del self._ids[:cut], self._lines[:cut], self._texts[:cut]


def _fetch(after_id: int) -> list[tuple]:
    return list(
        LogRecord.objects.filter(id__gt=after_id)
        .order_by("id")
        .values_list(*logs.COLUMNS, named=True)[:FETCH]
    )


_tails: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_tail() -> LogTail:
    """Return the tail of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    tail = _tails.get(loop)
    if tail is None:
        tail = _tails[loop] = LogTail()
    return tail

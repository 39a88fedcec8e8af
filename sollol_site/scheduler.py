"""The embedded scheduler: CELERY_BEAT_SCHEDULE run inside the server process.

The same task functions Celery beat sends to workers in production run here on the
same intervals, each in a worker thread of the scheduler's own so the event loop
and the requests' threads never wait on a task, and each entry on its own so a
slow task delays only itself.

The entries take their turns apart: entry i of n runs first at once, then i/n of
the shortest interval later than a cadence from the start would put it. Today's 13
entries (every 2, 5, 10, 60 s ...) are then at least 1/13 s apart: their phases
differ by multiples of 2/13 s, never by a whole second. When every 5 s job ran at
one moment, their threads held the event loop off the interpreter together for
tens of ms (bench/RESULTS.md, 2026-12-04 22:15). The first entry has no phase: the
app sweep is first, and counts on its next turn one interval away.

Two ways a task runs before its turn: `core.wakeups.wake(name)` from any thread
(the alerting engine, when events commit), and a task that returns a dict with
`next_in_ms` (it knows when it has work: a pending alert's "for" running out).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import current_app
from django.db import close_old_connections, connection

from core import wakeups

logger = logging.getLogger(__name__)

# Runs asked for before their turn start at most this often (seconds apart).
MIN_GAP = 0.25


def _interval(entry: dict[str, Any]) -> float:
    schedule = entry["schedule"]
    if isinstance(schedule, dt.timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, int | float):
        return float(schedule)
    raise ValueError(
        f"the embedded scheduler runs interval schedules only, not {schedule!r}"
    )


def _resolve(task_name: str):
    # Importing the task's module registers it with Celery under its name.
    current_app.loader.import_default_modules()
    module_name = task_name.rsplit(".", 1)[0]
    __import__(module_name)
    return current_app.tasks[task_name]


def _run_task(task) -> Any:
    try:
        return task.run()
    finally:
        _release_connection()


def _release_connection() -> None:
    """Each entry runs in a thread of its own. On SQLite that thread keeps its
    connection between runs (opening one took about 1 ms of CPU, for every run of
    every job, 2-3 a second); a connection that had an error is closed. Elsewhere
    the connection goes back to the pool as after a request."""
    if connection.vendor == "sqlite" and not connection.errors_occurred:
        return
    close_old_connections()


class Scheduler:
    def __init__(self, schedule: dict[str, dict[str, Any]]) -> None:
        self.entries = [
            (name, _resolve(entry["task"]), _interval(entry))
            for name, entry in schedule.items()
        ]
        self._tasks: list[asyncio.Task] = []
        self._wakes: dict[str, asyncio.Event] = {}  # by task name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe = None
        # Threads of their own, one an entry (each runs one at a time): with the
        # database away every task waits its 5 s for a connection, and in the
        # loop's default executor they took the threads requests need.
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, len(self.entries)), thread_name_prefix="scheduled"
        )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = wakeups.subscribe(self._wake)
        count = len(self.entries)
        shortest = min((interval for _, _, interval in self.entries), default=0.0)
        for index, (name, task, interval) in enumerate(self.entries):
            self._wakes[task.name] = asyncio.Event()
            phase = shortest * index / count
            self._tasks.append(
                asyncio.create_task(self._every(name, task, interval, phase), name=name)
            )

    def _wake(self, task_name: str) -> None:
        """Run task_name's entry now (called from any thread)."""
        event, loop = self._wakes.get(task_name), self._loop
        if event is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _every(self, name: str, task, interval: float, phase: float) -> None:
        # The first run at once; the turns after it `phase` later than a cadence
        # from the start would put them, so that entries do not run at one moment.
        next_run = time.monotonic() + phase
        woken = self._wakes[task.name]
        turn = True  # this run is the entry's turn (the first one is)
        while True:
            woken.clear()  # what woke it before this run is seen by this run
            started = time.monotonic()
            result = None
            try:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._executor, _run_task, task)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scheduled task %s failed", name)
            # Keep the cadence: a run that took 0.3 s of a 1 s interval waits 0.7 s.
            # A run before its turn (woken, or due sooner) leaves the turn where
            # it was: what makes no wake is still read every interval. A timer
            # may fire a little before its moment (uvloop's, by up to a
            # millisecond): the run it started is still the turn, not a run
            # before it followed by the turn again at once.
            if turn or started >= next_run:
                next_run = max(next_run + interval, time.monotonic())
            due = result.get("next_in_ms") if isinstance(result, dict) else None
            wait = next_run - time.monotonic()
            turn = True
            if isinstance(due, int | float) and due / 1000 < wait:
                wait = max(due / 1000, started + MIN_GAP - time.monotonic())
                turn = False
            try:
                await asyncio.wait_for(woken.wait(), max(0.0, wait))
            except TimeoutError:
                continue
            # Woken: run now (a burst of wakes, at most every MIN_GAP).
            turn = False
            await asyncio.sleep(max(0.0, started + MIN_GAP - time.monotonic()))

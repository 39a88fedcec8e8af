"""The embedded scheduler: CELERY_BEAT_SCHEDULE run inside the server process.

The same task functions Celery beat sends to workers in production run here on the
same intervals, each in a worker thread so the event loop never waits on a task,
and each entry on its own so a slow task delays only itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from celery import current_app
from django.db import close_old_connections

logger = logging.getLogger(__name__)


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
        close_old_connections()


class Scheduler:
    def __init__(self, schedule: dict[str, dict[str, Any]]) -> None:
        self.entries = [
            (name, _resolve(entry["task"]), _interval(entry))
            for name, entry in schedule.items()
        ]
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for name, task, interval in self.entries:
            self._tasks.append(
                asyncio.create_task(self._every(name, task, interval), name=name)
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _every(self, name: str, task, interval: float) -> None:
        next_run = time.monotonic()
        while True:
            try:
                await asyncio.to_thread(_run_task, task)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scheduled task %s failed", name)
            # Keep the cadence: a run that took 0.3 s of a 1 s interval waits 0.7 s.
            next_run = max(next_run + interval, time.monotonic())
            await asyncio.sleep(next_run - time.monotonic())

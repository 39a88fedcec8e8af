"""The embedded scheduler runs a task before its turn when woken, or when the task
says it has work due sooner (core.wakeups, `next_in_ms`)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

from celery import shared_task

from core import wakeups
from sollol_site.scheduler import MIN_GAP, Scheduler

runs: list[float] = []
due_in: list[int | None] = []


@shared_task(name="sollol_site.tests.test_scheduler.counted")
def counted() -> dict:
    runs.append(time.monotonic())
    next_in = due_in.pop(0) if due_in else None
    return {"next_in_ms": next_in} if next_in is not None else {}


SCHEDULE = {
    "counted": {"task": "sollol_site.tests.test_scheduler.counted", "schedule": 30.0}
}


async def until(count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(runs) < count:
        assert time.monotonic() < deadline, f"{len(runs)} runs, not {count}"
        await asyncio.sleep(0.01)


async def test_a_wake_from_another_thread_runs_the_task_now_and_bursts_once():
    runs.clear()
    scheduler = Scheduler(SCHEDULE)
    scheduler.start()
    try:
        await until(1)  # the first turn, at once
        woke = time.monotonic()
        for _ in range(5):  # a burst, from a writer thread
            threading.Thread(target=wakeups.wake, args=(counted.name,)).start()
        await until(2)
        assert runs[1] - woke < 1.0  # not the 30 s of its interval
        assert runs[1] - runs[0] >= MIN_GAP - 0.01
        await asyncio.sleep(0.6)
        assert len(runs) == 2  # five wakes close together: one run
        wakeups.wake("some.other.task")  # not this entry's
        await asyncio.sleep(0.4)
        assert len(runs) == 2
    finally:
        await scheduler.stop()
    wakeups.wake(counted.name)  # stopped: nobody listens, nothing runs
    await asyncio.sleep(0.3)
    assert len(runs) == 2


async def test_a_task_with_work_due_sooner_runs_again_then():
    runs.clear()
    due_in[:] = [400, None]
    scheduler = Scheduler(SCHEDULE)
    scheduler.start()
    try:
        await until(2)
        assert 0.35 <= runs[1] - runs[0] < 1.5
        await asyncio.sleep(0.5)
        assert len(runs) == 2  # then its interval again
    finally:
        await scheduler.stop()


async def test_a_run_before_its_turn_leaves_the_turn_where_it_was():
    runs.clear()
    due_in[:] = [300]
    scheduler = Scheduler(
        {
            "counted": {
                "task": "sollol_site.tests.test_scheduler.counted",
                "schedule": 1.0,
            }
        }
    )
    scheduler.start()
    try:
        await until(3)
        assert 0.25 <= runs[1] - runs[0] < 0.8  # due sooner: early
        assert 0.9 <= runs[2] - runs[0] < 1.5  # its turn, where it was
    finally:
        await scheduler.stop()


class EarlyTimers:
    """asyncio as the scheduler sees it, with timeouts that fire 2 ms before their
    moment, as uvloop's may (by up to a millisecond)."""

    def __getattr__(self, name: str):
        return getattr(asyncio, name)

    @staticmethod
    async def wait_for(awaitable, timeout: float):
        return await asyncio.wait_for(awaitable, max(0.0, timeout - 0.002))


async def test_a_timer_that_fires_a_little_early_still_runs_the_turn_once(
    monkeypatch,
):
    """Each early timer ran the task twice: once a hair before its turn, then at
    once again as the turn (serve's jobs ran up to twice as often)."""
    import sollol_site.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "asyncio", EarlyTimers())
    runs.clear()
    scheduler = Scheduler(
        {
            "counted": {
                "task": "sollol_site.tests.test_scheduler.counted",
                "schedule": 0.3,
            }
        }
    )
    scheduler.start()
    try:
        await asyncio.sleep(1.05)  # turns at 0, 0.3, 0.6 and 0.9 s
    finally:
        await scheduler.stop()
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert len(runs) == 4, gaps
    assert min(gaps) > 0.25


spread_runs: list[tuple[str, float]] = []


@shared_task(name="sollol_site.tests.test_scheduler.first")
def first() -> None:
    spread_runs.append(("first", time.monotonic()))


@shared_task(name="sollol_site.tests.test_scheduler.second")
def second() -> None:
    spread_runs.append(("second", time.monotonic()))


async def test_entries_take_their_turns_apart_not_at_one_moment():
    """All of serve's 5 s jobs ran in the same moment, each in a thread, and held
    the event loop off the interpreter together: the heartbeats' worst stalls at a
    paced 1,000/s were 21-56 ms, 12-22 ms with the turns spread
    (bench/RESULTS.md)."""
    spread_runs.clear()
    scheduler = Scheduler(
        {
            name: {"task": f"sollol_site.tests.test_scheduler.{name}", "schedule": 0.8}
            for name in ("first", "second")
        }
    )
    scheduler.start()
    try:
        await asyncio.sleep(2.3)  # first 0, 0.8, 1.6 s; second 0, 1.2, 2.0 s
    finally:
        await scheduler.stop()
    times = {
        name: [at - spread_runs[0][1] for named, at in spread_runs if named == name][:3]
        for name in ("first", "second")
    }
    assert len(times["first"]) == len(times["second"]) == 3, times
    # Both at once at start-up, then each on its own cadence, half a turn apart.
    assert abs(times["first"][0] - times["second"][0]) < 0.15
    for a, b in itertools.pairwise(times["first"]):
        assert 0.6 < b - a < 1.1
    for a, b in zip(times["first"][1:], times["second"][1:], strict=True):
        assert 0.2 < b - a < 0.6

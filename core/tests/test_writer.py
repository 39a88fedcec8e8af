"""The group-commit writer behind every lean ingest endpoint."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import OperationalError

from core.lean.writer import BatchWriter, WriterUnavailable


class Recorder:
    """A flush that records the batches it was given, slowly, like a real commit."""

    def __init__(self, fail_on=None, error=ValueError) -> None:
        self.batches: list[list] = []
        self.fail_on = fail_on
        self.error = error
        self.lock = threading.Lock()

    def __call__(self, items, now):
        with self.lock:
            self.batches.append(list(items))
        if self.fail_on is not None and self.fail_on in items:
            raise self.error(f"cannot store {self.fail_on}")
        threading.Event().wait(0.005)
        return [item * 10 for item in items]


@pytest.fixture
def writers():
    started = []

    def make(flush):
        writer = BatchWriter("test", flush)
        started.append(writer)
        return writer

    yield make
    for writer in started:
        writer.stop()


async def test_it_answers_each_item_with_its_own_result(writers):
    writer = writers(Recorder())
    assert await asyncio.gather(*(writer.submit(i) for i in range(5))) == [
        0,
        10,
        20,
        30,
        40,
    ]


async def test_it_writes_what_arrives_together_in_one_batch(writers):
    flush = Recorder()
    writer = writers(flush)
    results = await asyncio.gather(*(writer.submit(i) for i in range(200)))
    assert results == [i * 10 for i in range(200)]
    assert sorted(i for batch in flush.batches for i in batch) == list(range(200))
    # 200 requests arrived while earlier batches were committing: far fewer commits.
    assert len(flush.batches) < 20


async def test_it_fails_only_the_item_that_cannot_be_written(writers):
    writer = writers(Recorder(fail_on=3))
    outcomes = await asyncio.gather(
        *(writer.submit(i) for i in range(6)), return_exceptions=True
    )
    assert [o for i, o in enumerate(outcomes) if i != 3] == [0, 10, 20, 40, 50]
    assert isinstance(outcomes[3], ValueError)


async def test_it_reports_an_unreachable_database_to_every_waiting_request(writers):
    writer = writers(Recorder(fail_on=0, error=OperationalError))
    outcomes = await asyncio.gather(
        *(writer.submit(i) for i in range(3)), return_exceptions=True
    )
    assert isinstance(outcomes[0], WriterUnavailable)


async def test_it_writes_what_is_queued_before_it_stops(writers):
    flush = Recorder()
    writer = BatchWriter("draining", flush)
    pending = [asyncio.ensure_future(writer.submit(i)) for i in range(50)]
    await asyncio.sleep(0)  # let every submit reach the queue
    await asyncio.to_thread(writer.stop)
    assert await asyncio.gather(*pending) == [i * 10 for i in range(50)]

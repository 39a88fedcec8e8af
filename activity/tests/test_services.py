from __future__ import annotations

import datetime as dt
import random
import threading
import time

import pytest
from django.db import connection, transaction

from activity import services
from activity.models import Event, EventCount
from activity.services import NewEvent

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def record(n: int, now=T0, stream="applications") -> None:
    services.record_events(
        [NewEvent(stream, "app_updated", f"event {i}") for i in range(n)], now=now
    )


@pytest.mark.django_db
def test_it_sends_events_in_the_documented_shape():
    services.record_events(
        [NewEvent("applications", "app_stale", "gone quiet", {"app_id": "a", "id": 9})],
        now=T0,
    )
    event = Event.objects.get()
    assert event.as_message() == {
        "id": event.id,  # a payload can never overwrite the envelope
        "type": "app_stale",
        "timestamp": T0.timestamp(),
        "message": "gone quiet",
        "app_id": "a",
    }


@pytest.mark.django_db
def test_it_prunes_events_by_age_and_by_count():
    record(3, now=T0 - dt.timedelta(days=8))
    record(10, now=T0)
    assert services.prune_events(now=T0, max_age=7 * 86400, max_count=1000) == 3
    assert services.prune_events(now=T0, max_age=7 * 86400, max_count=4) == 6
    kept = list(Event.objects.values_list("message", flat=True))
    assert kept == ["event 6", "event 7", "event 8", "event 9"]
    # Counters for Prometheus: what was ever written, whatever pruning removed.
    counted = EventCount.objects.get(stream="applications", type="app_updated")
    assert counted.count == 13


@pytest.mark.django_db
def test_it_reads_a_stream_after_an_id():
    record(3, stream="applications")
    record(2, stream="logs")
    first = Event.objects.filter(stream="applications").first()
    after = services.events_after("applications", first.id)
    assert [e.message for e in after] == ["event 1", "event 2"]
    assert services.last_event_id("logs") == Event.objects.last().id


@pytest.mark.django_db(transaction=True)
def test_it_never_lets_a_reader_that_resumes_after_an_id_skip_an_event():
    """Ids are handed out at insert; the log must become visible in id order anyway.

    Writers hold their transactions open for a while after inserting, in random
    order; a reader that only ever asks for "events after the last id I saw" (what
    ?since= replay does) must still see every one of them.
    """
    writers, per_writer = 4, 15
    done = threading.Event()
    seen: list[int] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(per_writer):
                with transaction.atomic():
                    services.record_events(
                        [NewEvent("applications", "app_updated", f"{seed}-{i}")],
                        now=T0,
                    )
                    time.sleep(rng.uniform(0, 0.01))
        finally:
            connection.close()

    def read() -> None:
        last = 0
        try:
            while True:
                finished = done.is_set()
                for event in services.events_after("applications", last):
                    seen.append(event.id)
                    last = event.id
                if finished:
                    return
                time.sleep(0.001)
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(s,)) for s in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert len(seen) == writers * per_writer
    assert seen == sorted(Event.objects.values_list("id", flat=True))

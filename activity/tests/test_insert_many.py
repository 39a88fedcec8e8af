"""core.db.insert_many and insert_returning_ids store what bulk_create would,
however the values are typed."""

from __future__ import annotations

import datetime as dt

import pytest

from activity.models import Event, RequestRecord, Span
from core.db import insert_many, insert_returning_ids

pytestmark = pytest.mark.django_db

WHEN = dt.datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=dt.UTC)


def test_rows_read_back_as_they_were_given():
    insert_many(
        [
            RequestRecord(
                timestamp=WHEN,
                node="127.0.0.2:11434",
                model="llama3.2:3b",
                latency_ms=12.5,
                ok=False,
                prompt_tokens=None,
                completion_tokens=7,
                error='it "broke"',
                source=RequestRecord.Source.GATEWAY,  # an enum member: its value
                status_code=502,
            )
        ]
    )
    [row] = RequestRecord.objects.values()
    assert row["timestamp"] == WHEN
    assert row["source"] == "gateway"
    assert (row["ok"], row["prompt_tokens"], row["completion_tokens"]) == (
        False,
        None,
        7,
    )
    assert (row["latency_ms"], row["status_code"], row["error"]) == (
        12.5,
        502,
        'it "broke"',
    )
    assert row["endpoint"] == "" and row["ttft_ms"] is None


def test_json_goes_in_as_json_and_taken_keys_are_skipped_when_asked():
    def span(name: str) -> Span:
        return Span(
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            name=name,
            service="svc",
            kind="server",
            start=WHEN,
            end=WHEN,
            duration_ms=0.0,
            status="ok",
            attributes={"nested": {"list": [1, "two", None]}, "n": 1.5},
        )

    insert_many([span("first")], ignore_conflicts=True)
    insert_many([span("again")], ignore_conflicts=True)  # the same key: skipped
    [stored] = Span.objects.all()
    assert stored.name == "first"
    assert stored.attributes == {"nested": {"list": [1, "two", None]}, "n": 1.5}
    assert stored.events == []


def test_insert_returning_ids_gives_each_row_its_own_id_across_batches():
    events = [
        Event(
            stream=("nodes", "applications")[i % 2],
            type="app_registered",
            message=f"event {i}",
            payload={"i": i, "text": 'a "quoted" ü'},
            timestamp=WHEN,
        )
        for i in range(1203)
    ]
    insert_returning_ids(events, batch_size=500)  # three statements
    stored = dict(Event.objects.values_list("id", "message"))
    assert len(stored) == 1203
    assert all(stored[event.id] == event.message for event in events)
    assert [event.id for event in events] == sorted(event.id for event in events)
    again = Event.objects.get(id=events[1202].id)
    assert again.payload == {"i": 1202, "text": 'a "quoted" ü'}
    assert again.timestamp == WHEN
    assert not events[0]._state.adding

"""The event log: every state change in the product is recorded here first."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import connection, models, transaction

from activity import signals
from activity.models import Event, EventCount
from core import realtime
from core.db import add_into, insert_returning_ids, prune_newest

# Key of the PostgreSQL advisory lock that serializes transactions writing events.
# Ids are handed out at insert; holding this lock from the first event insert to
# commit makes id order equal commit order, so "replay everything after id N"
# can never skip an event that committed late.
EVENT_LOG_LOCK = 0x5011_0100


@dataclass(frozen=True)
class NewEvent:
    """An event a service decided on, before it is written."""

    stream: str
    type: str
    message: str
    payload: dict[str, Any] = field(default_factory=dict)


def record_events(events: Iterable[NewEvent], *, now: dt.datetime) -> list[Event]:
    """Write events in one transaction; they reach the streams when it commits.

    Call this last in a transaction: on PostgreSQL it takes the event-log lock, and a
    transaction holding it must not wait for row locks afterwards.
    """
    events = list(events)
    if not events:
        return []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [EVENT_LOG_LOCK])
        rows = [
            Event(
                stream=new.stream,
                type=new.type,
                message=new.message,
                payload=new.payload,
                timestamp=now,
            )
            for new in events
        ]
        # One INSERT for them all (a fleet registering at once is a thousand), and
        # one announcement a stream of its newest id: "events up to id N are
        # committed" says it for all before it (signals.announce_event is for an
        # event saved alone).
        if connection.features.can_return_rows_from_bulk_insert:
            insert_returning_ids(rows)
            newest: dict[str, int] = {}
            for row in rows:
                newest[row.stream] = max(row.id, newest.get(row.stream, 0))
            for stream, event_id in newest.items():
                transaction.on_commit(partial(realtime.announce, stream, event_id))
        else:  # a database that does not say what it inserted: one by one
            for row in rows:
                row.save(force_insert=True)  # post_save announces it
        _count_events(events)
        streams = frozenset(new.stream for new in events)
        transaction.on_commit(
            partial(signals.events_committed.send_robust, sender=Event, streams=streams)
        )
    return rows


def _count_events(events: list[NewEvent]) -> None:
    """Add the events to the per-type totals (inside the event-log lock): one
    INSERT ... ON CONFLICT DO UPDATE for every type the batch holds."""
    counts = Counter((new.stream, new.type) for new in events)
    add_into(
        EventCount,
        [
            {"stream": stream, "type": type, "count": count}
            for (stream, type), count in sorted(counts.items())
        ],
        key=("stream", "type"),
    )


def events_after(stream: str, after_id: int, *, limit: int = 500) -> list[Event]:
    """Return the stream's committed events after after_id, oldest first."""
    return list(
        Event.objects.filter(stream=stream, id__gt=after_id).order_by("id")[:limit]
    )


def last_event_id(stream: str) -> int:
    """Return the id of the stream's newest committed event, or 0."""
    newest = Event.objects.filter(stream=stream).order_by("-id").values("id").first()
    return newest["id"] if newest else 0


def prune_events(*, now: dt.datetime, max_age: float, max_count: int) -> int:
    """Delete events older than max_age seconds or beyond the newest max_count."""
    return prune_oldest(Event, now=now, max_age=max_age, max_count=max_count)


def prune_oldest(
    model: type[models.Model], *, now: dt.datetime, max_age: float, max_count: int
) -> int:
    """Delete a log-like table's rows older than max_age seconds (by `timestamp`),
    then all but its newest max_count (by id); return how many went."""
    deleted, _ = model.objects.filter(
        timestamp__lt=now - dt.timedelta(seconds=max_age)
    ).delete()
    return deleted + prune_newest(model.objects.all(), keep=max_count)

"""The event log announces each committed event; apps tell each other through here.

Signals that cross from one domain app to another live in this lower layer, so
neither app imports the other.
"""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

from activity.models import Event
from core import realtime

# Sent by the application registry when an application registers or its metadata
# changes, with metadata= (the whole stored metadata) and now=. The network
# watches the nodes and backends an application names there.
application_reported = Signal()

# Sent once a transaction that wrote events has committed, with streams= (the
# streams they went to). The alerting engine asks to evaluate at once.
events_committed = Signal()


@receiver(post_save, sender=Event, dispatch_uid="announce_event")
def announce_event(sender, instance: Event, created: bool, **kwargs) -> None:
    if created:
        transaction.on_commit(partial(realtime.announce, instance.stream, instance.id))

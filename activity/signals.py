from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from activity.models import Event
from core import realtime


@receiver(post_save, sender=Event, dispatch_uid="announce_event")
def announce_event(sender, instance: Event, created: bool, **kwargs) -> None:
    if created:
        transaction.on_commit(partial(realtime.announce, instance.stream, instance.id))

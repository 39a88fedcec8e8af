from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from activity import services


@shared_task(name="activity.tasks.prune_events")
def prune_events() -> int:
    return services.prune_events(
        now=timezone.now(),
        max_age=settings.SOLLOL_EVENT_RETENTION_AGE,
        max_count=settings.SOLLOL_EVENT_RETENTION_COUNT,
    )

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from applications import services


@shared_task(name="applications.tasks.sweep_applications")
def sweep_applications() -> dict[str, int]:
    now = timezone.now()
    result = services.sweep_applications(now=now)
    services.publish_heartbeat_samples(now=now)
    return result

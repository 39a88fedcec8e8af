from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from frameworks import services


@shared_task(name="frameworks.tasks.collect_frameworks")
def collect_frameworks() -> dict[str, str]:
    return services.collect_frameworks(now=timezone.now())

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from alerts import config, delivery, services


@shared_task(name="alerts.tasks.evaluate_alerts")
def evaluate_alerts() -> dict[str, int]:
    config.prepare()
    counts = services.evaluate(timezone.now())
    if counts.get("deliveries"):
        delivery.deliver_due()  # now, not at the next delivery round
    return dict(counts)


@shared_task(name="alerts.tasks.deliver_alerts")
def deliver_alerts() -> int:
    return delivery.deliver_due()


@shared_task(name="alerts.tasks.prune_alerts")
def prune_alerts() -> dict[str, int]:
    return services.prune(timezone.now())

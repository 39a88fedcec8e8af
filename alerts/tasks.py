from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from alerts import config, delivery, services


def _in_worker(task) -> bool:
    """Run by a Celery worker (production), not called by the embedded scheduler."""
    return not task.request.called_directly


@shared_task(bind=True, name="alerts.tasks.evaluate_alerts")
def evaluate_alerts(self) -> dict[str, int]:
    config.prepare()
    counts = services.evaluate(timezone.now())
    if counts.get("deliveries"):
        # now, not at the next delivery round
        delivery.deliver_due(as_tasks=_in_worker(self))
    return dict(counts)


@shared_task(bind=True, name="alerts.tasks.deliver_alerts")
def deliver_alerts(self) -> int:
    return delivery.deliver_due(as_tasks=_in_worker(self))


@shared_task(
    name="alerts.tasks.send_delivery", acks_late=True, reject_on_worker_lost=True
)
def send_delivery(delivery_id: int, lease: str) -> None:
    """One notification to one channel (deliver_due queues it, in a worker)."""
    delivery.send_claimed(delivery_id, dt.datetime.fromisoformat(lease), as_tasks=True)


@shared_task(name="alerts.tasks.prune_alerts")
def prune_alerts() -> dict[str, int]:
    return services.prune(timezone.now())

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from activity import logs, metrics, services, traces


@shared_task(name="activity.tasks.prune_events")
def prune_events() -> int:
    return services.prune_events(
        now=timezone.now(),
        max_age=settings.SOLLOL_EVENT_RETENTION_AGE,
        max_count=settings.SOLLOL_EVENT_RETENTION_COUNT,
    )


@shared_task(name="activity.tasks.prune_activity")
def prune_activity() -> dict[str, int]:
    """Keep reported requests and log lines within their age and count bounds."""
    now = timezone.now()
    return {
        "requests": metrics.prune_requests(
            now=now,
            max_age=settings.SOLLOL_REQUEST_RETENTION_AGE,
            max_count=settings.SOLLOL_REQUEST_RETENTION_COUNT,
        ),
        "logs": logs.prune_logs(
            now=now,
            max_age=settings.SOLLOL_LOG_RETENTION_AGE,
            max_count=settings.SOLLOL_LOG_RETENTION_COUNT,
        ),
    }


@shared_task(name="activity.tasks.publish_metrics_sample")
def publish_metrics_sample() -> None:
    metrics.publish_metrics_sample(now=timezone.now())


@shared_task(name="activity.tasks.prune_traces")
def prune_traces() -> int:
    return traces.prune_traces(
        now=timezone.now(),
        max_age=settings.SOLLOL_TRACE_RETENTION_AGE,
        max_count=settings.SOLLOL_TRACE_RETENTION_COUNT,
    )

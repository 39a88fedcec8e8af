from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from activity import history, logs, metrics, rollups, services, traces


@shared_task(name="activity.tasks.prune_events")
def prune_events() -> int:
    return services.prune_events(
        now=timezone.now(),
        max_age=settings.SOLLOL_EVENT_RETENTION_AGE,
        max_count=settings.SOLLOL_EVENT_RETENTION_COUNT,
    )


@shared_task(name="activity.tasks.prune_activity")
def prune_activity() -> dict[str, int]:
    """Keep requests, their rollups and log lines within their bounds."""
    now = timezone.now()
    pruned = rollups.prune_rollups(
        now=now,
        minute_age=settings.SOLLOL_ROLLUP_MINUTE_RETENTION,
        hour_age=settings.SOLLOL_ROLLUP_HOUR_RETENTION,
    )
    return {
        "requests": metrics.prune_requests(
            now=now,
            max_age=settings.SOLLOL_REQUEST_RETENTION_AGE,
            max_count=settings.SOLLOL_REQUEST_RETENTION_COUNT,
        ),
        **{f"rollup_{period}": count for period, count in pruned.items()},
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


@shared_task(name="activity.tasks.keep_history")
def keep_history() -> dict[str, int]:
    """Measure what no probe measures, then roll up closed minutes and hours."""
    now = timezone.now()
    made = history.roll_up(now=now)  # first: a failing sampler stops no rollup
    kept = history.sample(now=now)
    return {"sampled": kept, **{f"step_{step}": n for step, n in made.items()}}


@shared_task(name="activity.tasks.prune_history")
def prune_history() -> dict[int, int]:
    return history.prune(now=timezone.now(), retention=history.retention())

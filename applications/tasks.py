from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from applications import services

# A run of its own comes this long after the deadline it is for (so the deadline
# has passed by the database's clock too), and never sooner than this after the
# run that asked for it.
PAST_DEADLINE = 0.02
MIN_GAP = 0.2


@shared_task(bind=True, name="applications.tasks.sweep_applications")
def sweep_applications(self) -> dict[str, int]:
    """Mark stale and remove what is due; then, when the next deadline comes
    before the next scheduled run, ask for a run at that deadline: in a Celery
    worker as a task queued with a countdown, under the embedded scheduler as
    `next_in_ms`."""
    now = timezone.now()
    result = services.sweep_applications(now=now)
    services.publish_heartbeat_samples(now=now)
    every = settings.APP_SWEEP_EVERY
    if max(result["stale"], result["removed"]) >= services.SWEEP_BATCH:
        wait = 0.0  # more are due than one run takes: again at once
    else:
        due = services.next_deadline()
        if due is None or due <= now:
            return result  # nothing coming (or left to another sweeper's lock)
        wait = (due - now).total_seconds() + PAST_DEADLINE
    if wait >= every:
        return result  # the schedule's own run comes first
    wait = max(wait, MIN_GAP)
    if self.request.called_directly:
        result["next_in_ms"] = int(wait * 1000)
    else:
        self.apply_async(countdown=wait, expires=wait + every)
        result["queued_in_ms"] = int(wait * 1000)
    return result

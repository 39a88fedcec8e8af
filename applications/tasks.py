from __future__ import annotations

import logging
import math
import threading
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from applications import services

# A run of its own comes this long after the deadline it is for (so the deadline
# has passed by the database's clock too), and never sooner than this after the
# run that asked for it.
PAST_DEADLINE = 0.02
MIN_GAP = 0.2

logger = logging.getLogger(__name__)


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
        wait, due = 0.0, None  # more are due than one run takes: again at once
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
    elif due is None or _asked.first(due.timestamp(), wait + every):
        self.apply_async(countdown=wait, expires=wait + every)
        result["queued_in_ms"] = int(wait * 1000)
    return result


class _Asked:
    """The moments a run of its own was queued for, for every worker.

    Each beat run can start a chain of runs of their own (each run queues the
    next deadline's), and every chain reaches the same deadlines: without this,
    while apps keep coming due less than a schedule interval apart, one more run
    a deadline every interval. The first run to ask for a moment queues it; the
    others leave it. In Redis (the broker, SET NX) where there is one; else in
    this process, which is then the only worker (the in-memory broker).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._here: dict[int, float] = {}  # moment (ms) -> forgotten after (clock)
        self._redis = None

    def first(self, moment: float, keep: float) -> bool:
        """Whether this run is the first to ask for a run at moment (a POSIX
        time); remember it keep seconds."""
        key = int(moment * 1000)
        if settings.REDIS_URL:
            try:
                if self._redis is None:
                    import redis

                    self._redis = redis.Redis.from_url(
                        settings.REDIS_URL, socket_timeout=1.0
                    )
                return bool(
                    self._redis.set(
                        f"{settings.CHANNEL_PREFIX}:sweep-at:{key}",
                        1,
                        nx=True,
                        ex=math.ceil(keep) + 1,
                    )
                )
            except Exception as exc:  # Redis away: the beat's runs go on
                logger.warning("could not tell other workers of a sweep: %s", exc)
                return True
        now = time.monotonic()
        with self._lock:
            for known, until in list(self._here.items()):
                if until < now:
                    del self._here[known]
            if key in self._here:
                return False
            self._here[key] = now + keep
            return True


_asked = _Asked()

"""The Celery app for production: `celery -A sollol_site worker` and `... beat`."""

import os
import threading
import time

from celery import Celery
from celery.signals import after_setup_logger, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sollol_site.settings")

app = Celery("sollol_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
def capture_worker_logs(logger, **kwargs) -> None:
    """Ship the worker's own log lines to /ws/logs, as the web processes do."""
    from django.conf import settings

    if settings.SOLLOL_CAPTURE_LOGS:
        from activity import capture

        capture.install(settings.SOLLOL_CAPTURE_LOG_LEVEL)


@worker_process_init.connect
def forget_connections_of_the_parent(**kwargs) -> None:
    """A pool process must not use the channel layer its parent made before forking.

    The parent announces events (its own log lines, at least) before it forks its
    pool; a child going on with the inherited Redis connections would share their
    sockets with the parent. Each child makes its own on first use instead.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()


_sent: dict[str, float] = {}
_sent_lock = threading.Lock()
WAKE_GAP = 0.25  # seconds: a burst of wakes sends a task once


_later: set[str] = set()  # tasks sent for the end of the current gap


def _send_now(task_name: str) -> None:
    """core.wakeups in a worker: send the task to the queue now, once a burst,
    and once more at the burst's end (what woke it last may have committed after
    the first run read)."""
    now = time.monotonic()
    with _sent_lock:
        last = _sent.get(task_name, float("-inf"))
        if now - last >= WAKE_GAP:
            _sent[task_name] = now
            _later.discard(task_name)
            countdown = None
        elif task_name not in _later:
            _later.add(task_name)
            countdown = WAKE_GAP
        else:
            return
    app.send_task(task_name, countdown=countdown)


@worker_init.connect
@worker_process_init.connect
def send_woken_tasks(**kwargs) -> None:
    """What a worker's work wakes (the alerting engine, when events commit) is
    sent to the queue at once instead of waiting for beat's next turn."""
    from core import wakeups

    wakeups.subscribe(_send_now)

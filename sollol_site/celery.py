"""The Celery app for production: `celery -A sollol_site worker` and `... beat`."""

import os

from celery import Celery
from celery.signals import after_setup_logger, worker_process_init

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

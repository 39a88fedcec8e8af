"""The Celery app for production: `celery -A sollol_site worker` and `... beat`."""

import os

from celery import Celery
from celery.signals import after_setup_logger

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

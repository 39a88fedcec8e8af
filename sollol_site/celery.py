"""The Celery app for production: `celery -A sollol_site worker` and `... beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sollol_site.settings")

app = Celery("sollol_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

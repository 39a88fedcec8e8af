from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from activity.models import Event
from applications import tasks
from applications.models import Application
from applications.tests.factories import register
from sollol_site.scheduler import Scheduler

pytestmark = pytest.mark.django_db


def test_it_runs_the_lifecycle_when_the_beat_task_fires():
    with time_machine.travel(timezone.now(), tick=False) as clock:
        register("app-1", now=timezone.now())
        results = []
        for _ in range(61):  # beat fires the sweep every second
            results.append(tasks.sweep_applications())
            clock.shift(dt.timedelta(seconds=1))
    assert [r["stale"] for r in results].index(1) == 30
    assert [r["removed"] for r in results].index(1) == 60
    assert not Application.objects.exists()
    assert list(Event.objects.values_list("type", flat=True)) == [
        "app_registered",
        "app_stale",
        "app_removed",
    ]


def test_it_schedules_every_periodic_job_for_the_embedded_scheduler_too():
    scheduler = Scheduler(settings.CELERY_BEAT_SCHEDULE)
    intervals = {name: interval for name, _, interval in scheduler.entries}
    assert intervals["sweep-applications"] <= 1.0
    scheduled = {task.name for _, task, _ in scheduler.entries}
    assert scheduled == {job["task"] for job in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {
        "applications.tasks.sweep_applications",
        "activity.tasks.prune_events",
        "activity.tasks.prune_activity",
        "network.tasks.probe_network",
        "network.tasks.prune_node_history",
    } <= scheduled

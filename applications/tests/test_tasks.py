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


@pytest.fixture
def queued(monkeypatch) -> list[dict]:
    """The runs of their own a worker's sweep queued (their apply_async options)."""
    asked: list[dict] = []
    monkeypatch.setattr(
        tasks.sweep_applications,
        "apply_async",
        lambda *args, **options: asked.append(options),
    )
    return asked


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
    # On its own at most every half stale timeout; deadlines between get their own.
    assert intervals["sweep-applications"] <= settings.SOLLOL_APP_STALE_AFTER / 2
    scheduled = {task.name for _, task, _ in scheduler.entries}
    assert scheduled == {job["task"] for job in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {
        "applications.tasks.sweep_applications",
        "activity.tasks.prune_events",
        "activity.tasks.prune_activity",
        "network.tasks.probe_network",
        "network.tasks.prune_node_history",
    } <= scheduled


def test_a_deadline_before_the_next_run_gets_a_run_of_its_own_embedded():
    every = settings.APP_SWEEP_EVERY
    with time_machine.travel(timezone.now(), tick=False) as clock:
        tasks.sweep_applications()  # the sweep was running (not an outage)
        register("app-1", now=timezone.now())  # stale in 30 s
        stale = settings.SOLLOL_APP_STALE_AFTER
        clock.shift(dt.timedelta(seconds=stale - 2 * every))
        assert "next_in_ms" not in tasks.sweep_applications()  # its turn comes
        clock.shift(dt.timedelta(seconds=2 * every - 0.5))
        asked = tasks.sweep_applications()  # the deadline is 0.5 s away
        assert 500 <= asked["next_in_ms"] <= 600, asked
        clock.shift(dt.timedelta(milliseconds=asked["next_in_ms"]))
        assert tasks.sweep_applications()["stale"] == 1  # at its deadline


def test_in_a_worker_the_run_of_its_own_is_a_task_queued_for_the_deadline(queued):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        tasks.sweep_applications()
        register("app-1", now=timezone.now())
        clock.shift(dt.timedelta(seconds=settings.SOLLOL_APP_STALE_AFTER - 1))
        tasks.sweep_applications.apply()  # as a worker runs it
    [options] = queued
    assert 1.0 <= options["countdown"] <= 1.1, options


def test_workers_whose_runs_reach_one_deadline_queue_one_run_for_it(queued):
    """Each beat run may start a chain of runs of their own; chains that reach
    the same deadline must not each queue a run for it (one more a deadline
    every beat interval, while apps keep coming due)."""
    with time_machine.travel(timezone.now(), tick=False) as clock:
        tasks.sweep_applications()
        register("app-1", now=timezone.now())
        clock.shift(dt.timedelta(seconds=2))
        register("app-2", now=timezone.now())  # stale 2 s after app-1
        clock.shift(dt.timedelta(seconds=settings.SOLLOL_APP_STALE_AFTER - 3))
        for _ in range(3):  # the beat's run and two chains, as workers run them
            tasks.sweep_applications.apply()
        assert len(queued) == 1, queued  # one run for app-1's deadline
        clock.shift(dt.timedelta(seconds=1.1))
        assert tasks.sweep_applications.apply().get()["stale"] == 1
        tasks.sweep_applications.apply()  # the other chain
    assert len(queued) == 2, queued  # and one for app-2's

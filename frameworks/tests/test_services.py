"""Storing collections, status-change events, bounded history, the API's answer."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from activity.models import Event
from frameworks import services
from frameworks.collectors import Collection
from frameworks.models import FrameworkSnapshot, FrameworkState
from frameworks.tests.fakes import FakeDashboard, closed_port_url

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
RAY_URL = "http://127.0.0.1:8265"


@pytest.fixture
def ray_configured(settings):
    settings.SOLLOL_RAY_DASHBOARD_URL = RAY_URL
    settings.SOLLOL_RAY_PUBLIC_URL = ""
    settings.SOLLOL_DASK_DASHBOARD_URL = ""
    return settings


def collection(status: str, *, cpu_used: float = 0.0, error: str = "") -> Collection:
    active = status == "active"
    return Collection(
        "ray",
        status,
        RAY_URL,
        data={"ray_version": "2.60.0", "nodes": []} if active else {},
        sample={"cpu_used": cpu_used} if active else {},
        error=error,
        duration_ms=12.5,
    )


def events():
    return list(Event.objects.filter(stream="frameworks").order_by("id"))


def test_it_announces_the_first_status_and_each_change_only(
    ray_configured, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.record_collection(collection("active"), now=T0)
        services.record_collection(
            collection("active"), now=T0 + dt.timedelta(seconds=5)
        )
        services.record_collection(
            collection("unreachable", error="cannot connect to 127.0.0.1:8265"),
            now=T0 + dt.timedelta(seconds=10),
        )

    first, change = events()
    assert first.type == change.type == "framework_status_change"
    assert first.payload["old_status"] is None
    assert first.payload["new_status"] == "active"
    message = change.as_message()
    assert message["framework"] == "ray"
    assert (message["old_status"], message["new_status"]) == ("active", "unreachable")
    assert message["message"] == (
        f"Ray dashboard {RAY_URL}: active → unreachable "
        "(cannot connect to 127.0.0.1:8265)"
    )
    assert message["public_url"] == RAY_URL
    assert FrameworkSnapshot.objects.count() == 3


def test_a_status_another_collector_already_flipped_is_not_announced_twice(
    ray_configured,
):
    services.record_collection(collection("active"), now=T0)
    # Another process flips the state first (its event is its own).
    FrameworkState.objects.filter(kind="ray").update(status="unreachable")

    services.record_collection(collection("unreachable"), now=T0)

    assert [e.payload["new_status"] for e in events()] == ["active"]


def test_history_is_bounded(ray_configured):
    ray_configured.SOLLOL_FRAMEWORK_HISTORY = 5
    for i in range(12):
        services.record_collection(
            collection("active", cpu_used=i), now=T0 + dt.timedelta(seconds=5 * i)
        )

    assert FrameworkSnapshot.objects.filter(kind="ray").count() == 5
    answer = services.metrics("ray", now=T0 + dt.timedelta(seconds=60))
    assert [point["cpu_used"] for point in answer["history"]] == [7, 8, 9, 10, 11]
    assert answer["history"][-1]["t"] == (T0 + dt.timedelta(seconds=55)).timestamp()


def test_the_answer_is_the_newest_snapshot(ray_configured):
    services.record_collection(collection("unreachable", error="gone"), now=T0)
    services.record_collection(
        collection("active", cpu_used=1.0), now=T0 + dt.timedelta(seconds=5)
    )

    answer = services.metrics("ray", now=T0 + dt.timedelta(seconds=6))

    assert answer["status"] == "active"
    assert answer["status_since"] == (T0 + dt.timedelta(seconds=5)).timestamp()
    assert answer["ray_version"] == "2.60.0"
    assert answer["nodes"] == []
    assert answer["resources"] is None  # keys are always there, null until known
    assert answer["error"] is None
    assert answer["collected_at"] == (T0 + dt.timedelta(seconds=5)).timestamp()
    assert answer["duration_ms"] == 12.5
    assert answer["stale"] is False
    assert [p["status"] for p in answer["history"]] == ["unreachable", "active"]


def test_an_old_snapshot_is_marked_stale(ray_configured):
    services.record_collection(collection("active"), now=T0)

    answer = services.metrics("ray", now=T0 + dt.timedelta(minutes=5))

    assert answer["status"] == "active" and answer["stale"] is True


def test_an_unset_url_is_not_configured_and_says_which_setting(settings):
    settings.SOLLOL_DASK_DASHBOARD_URL = ""

    answer = services.metrics("dask", now=T0)

    assert answer["status"] == "not_configured"
    assert answer["error"] == "SOLLOL_DASK_DASHBOARD_URL is not set"
    assert answer["dashboard_url"] is None and answer["public_url"] is None
    assert answer["workers"] is None and answer["history"] == []


def test_a_configured_framework_not_yet_collected_is_pending(ray_configured):
    answer = services.metrics("ray", now=T0)

    assert answer["status"] == "pending"
    assert answer["dashboard_url"] == RAY_URL


def test_snapshots_of_another_url_are_not_shown_as_this_one(ray_configured):
    services.record_collection(collection("active"), now=T0)
    ray_configured.SOLLOL_RAY_DASHBOARD_URL = "http://127.0.0.9:8265"

    assert services.metrics("ray", now=T0)["status"] == "pending"


def test_the_public_url_defaults_to_the_dashboard_url(ray_configured):
    assert services.metrics("ray", now=T0)["public_url"] == RAY_URL
    ray_configured.SOLLOL_RAY_PUBLIC_URL = "http://ray.example.internal:8265"
    assert services.metrics("ray", now=T0)["public_url"] == (
        "http://ray.example.internal:8265"
    )


def test_a_loopback_url_is_linked_on_the_host_the_browser_used(ray_configured):
    # UnifiedDashboard(...).run(host="0.0.0.0") watches Ray at 127.0.0.1: a browser
    # elsewhere must not be sent to its own loopback.
    assert services.public_url("ray", "10.1.2.3:8080") == "http://10.1.2.3:8265"
    assert services.public_url("ray", "[fd00::7]:8080") == "http://[fd00::7]:8265"
    assert services.metrics("ray", now=T0, host="dash.lan")["public_url"] == (
        "http://dash.lan:8265"
    )


def test_a_configured_or_remote_url_is_linked_as_it_is(ray_configured):
    ray_configured.SOLLOL_RAY_DASHBOARD_URL = "http://10.9.9.9:8265"
    assert services.public_url("ray", "10.1.2.3:8080") == "http://10.9.9.9:8265"
    ray_configured.SOLLOL_RAY_DASHBOARD_URL = RAY_URL
    ray_configured.SOLLOL_RAY_PUBLIC_URL = "https://ray.example.internal"
    assert services.public_url("ray", "10.1.2.3:8080") == (
        "https://ray.example.internal"
    )


def test_the_task_collects_stores_and_announces(settings):
    ray = FakeDashboard.ray()
    try:
        settings.SOLLOL_RAY_DASHBOARD_URL = ray.url
        settings.SOLLOL_RAY_AUTH_TOKEN = "tok"
        settings.SOLLOL_DASK_DASHBOARD_URL = closed_port_url()

        statuses = services.collect_frameworks(now=timezone.now())
    finally:
        ray.close()

    assert statuses == {"ray": "active", "dask": "unreachable"}
    assert {e.payload["framework"]: e.payload["new_status"] for e in events()} == {
        "ray": "active",
        "dask": "unreachable",
    }
    answer = services.metrics("ray", now=timezone.now())
    assert answer["status"] == "active"
    assert answer["resources"]["CPU"]["total"] == 2.0
    assert answer["history"][-1]["cpu_total"] == 2.0


def test_a_framework_losing_its_url_is_announced_once(settings):
    settings.SOLLOL_RAY_DASHBOARD_URL = RAY_URL
    services.record_collection(collection("active"), now=T0)
    settings.SOLLOL_RAY_DASHBOARD_URL = ""
    settings.SOLLOL_DASK_DASHBOARD_URL = ""

    services.collect_frameworks(now=T0 + dt.timedelta(seconds=5))
    services.collect_frameworks(now=T0 + dt.timedelta(seconds=10))

    assert [(e.payload["framework"], e.payload["new_status"]) for e in events()] == [
        ("ray", "active"),
        ("ray", "not_configured"),
    ]
    # Never watched: nothing written for Dask at all.
    assert not FrameworkSnapshot.objects.filter(kind="dask").exists()


def test_a_dashboards_password_in_its_url_is_sent_and_shown_nowhere(settings, client):
    dask = FakeDashboard.dask()
    try:
        settings.SOLLOL_RAY_DASHBOARD_URL = ""
        settings.SOLLOL_DASK_DASHBOARD_URL = dask.url.replace("//", "//me:pw-42@")
        statuses = services.collect_frameworks(now=timezone.now())
    finally:
        dask.close()

    assert statuses["dask"] == "active"
    sent = {headers.get("Authorization") for _, headers in dask.requests}
    assert sent == {"Basic bWU6cHctNDI="}  # me:pw-42
    answer = client.get("/api/dask/metrics").json()
    assert answer["status"] == "active" and answer["dashboard_url"] == dask.url
    shown = [
        str(answer),
        str([(e.message, e.payload) for e in events()]),
        str(list(FrameworkSnapshot.objects.values_list("dashboard_url", flat=True))),
        str(list(FrameworkState.objects.values_list("dashboard_url", flat=True))),
    ]
    assert not any("pw-42" in text for text in shown)

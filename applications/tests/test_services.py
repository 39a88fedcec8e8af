from __future__ import annotations

import pytest
from django.test import override_settings

from activity.models import Event
from applications import services
from applications.api.serializers import AppReport
from applications.availability import availability
from applications.choices import AppStatus
from applications.models import Application, SweepMark
from applications.tests.factories import T0, register, seconds

pytestmark = pytest.mark.django_db


def events(type: str | None = None) -> list[Event]:
    rows = Event.objects.filter(stream="applications").order_by("id")
    return list(rows.filter(type=type) if type else rows)


def heartbeat(app_id="app-1", now=T0, **fields):
    return services.record_heartbeats([AppReport(app_id=app_id, **fields)], now=now)


def test_it_registers_an_application_and_announces_it(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        app = register(now=T0, name="SynapticLlamas", router_type="HybridRouter")
    assert Application.objects.get(pk="app-1").name == "SynapticLlamas"
    assert app.status == AppStatus.ACTIVE
    [event] = events()
    message = event.as_message()
    assert message["type"] == "app_registered"
    assert message["app_id"] == "app-1"
    assert message["router_type"] == "HybridRouter"
    assert message["message"] == "📱 Application started: SynapticLlamas (HybridRouter)"
    assert message["timestamp"] == T0.timestamp()
    # The announcement (and the news for the alerting engine) wait for the commit.
    assert len(callbacks) == 2


def test_it_updates_an_application_registered_again_under_the_same_id():
    register(now=T0, version="1.0.0")
    register(now=T0 + seconds(5), version="1.1.0")
    assert Application.objects.count() == 1
    assert Application.objects.get().version == "1.1.0"
    assert [e.type for e in events()] == ["app_registered", "app_updated"]
    assert events("app_updated")[0].payload["changed"] == ["version"]


def test_it_records_no_event_for_a_registration_that_changes_nothing():
    register(now=T0)
    register(now=T0 + seconds(5))
    assert [e.type for e in events()] == ["app_registered"]


def test_it_merges_heartbeat_metadata_into_what_is_stored():
    register(now=T0, metadata={"env": "prod", "nodes": 3})
    heartbeat(now=T0 + seconds(10), metadata={"requests_processed": 1000})
    app = Application.objects.get()
    assert app.metadata == {"env": "prod", "nodes": 3, "requests_processed": 1000}
    assert app.last_heartbeat == T0 + seconds(10)
    [updated] = events("app_updated")
    assert updated.payload["changed"] == ["metadata"]
    assert updated.payload["metadata"]["requests_processed"] == 1000


def test_it_records_no_event_for_a_heartbeat_that_only_moves_the_clock():
    register(now=T0)
    result = heartbeat(
        now=T0 + seconds(10),
        name="My App",
        router_type="HybridRouter",
        version="1.0.0",
        metadata={"env": "prod"},
    )
    assert result == {"app-1": services.HeartbeatResult.OK}
    app = Application.objects.get()
    assert app.last_heartbeat == T0 + seconds(10)
    assert app.stale_after == T0 + seconds(40)
    assert app.remove_after == T0 + seconds(70)
    assert [e.type for e in events()] == ["app_registered"]


def test_it_answers_not_found_for_an_unknown_app_without_a_name():
    assert heartbeat("ghost") == {"ghost": services.HeartbeatResult.NOT_FOUND}
    assert not Application.objects.exists()
    assert events() == []


def test_it_registers_an_unknown_app_again_from_a_heartbeat_with_a_name():
    result = heartbeat("back", name="Returning", router_type="R", metadata={"a": 1})
    assert result == {"back": services.HeartbeatResult.REGISTERED}
    app = Application.objects.get(pk="back")
    assert (app.name, app.router_type, app.metadata) == ("Returning", "R", {"a": 1})
    [event] = events()
    assert event.type == "app_registered"
    assert event.payload["reregistered"] is True


def test_it_folds_heartbeats_that_arrive_together():
    register(now=T0, metadata={})
    services.record_heartbeats(
        [
            AppReport(app_id="app-1", metadata={"a": 1, "b": 1}),
            AppReport(app_id="app-1", metadata={"b": 2}, version="2.0"),
        ],
        now=T0 + seconds(1),
    )
    app = Application.objects.get()
    assert app.metadata == {"a": 1, "b": 2}
    assert app.version == "2.0"
    assert len(events("app_updated")) == 1


def test_it_marks_an_app_stale_exactly_at_its_deadline():
    register(now=T0)
    SweepMark.objects.create(name="applications", last_run=T0)
    assert services.sweep_applications(now=T0 + seconds(29.9))["stale"] == 0
    assert services.sweep_applications(now=T0 + seconds(30))["stale"] == 1
    assert Application.objects.get().status == AppStatus.STALE
    [stale] = events("app_stale")
    assert stale.message == "⚠️  Application not responding: My App (last seen 30s ago)"
    assert stale.payload["status"] == "stale"
    # Announced once, not on every sweep.
    services.sweep_applications(now=T0 + seconds(31))
    assert len(events("app_stale")) == 1


def test_it_recovers_a_stale_app_that_heartbeats_again():
    register(now=T0)
    SweepMark.objects.create(name="applications", last_run=T0 + seconds(30))
    services.mark_stale(now=T0 + seconds(30))
    heartbeat(now=T0 + seconds(35))
    app = Application.objects.get()
    assert app.status == AppStatus.ACTIVE
    assert app.get_status(T0 + seconds(35)) == AppStatus.ACTIVE
    assert [e.type for e in events()][-1] == "app_recovered"


def test_it_removes_an_app_after_the_removal_timeout():
    register(now=T0)
    SweepMark.objects.create(name="applications", last_run=T0)
    for tick in range(1, 61):
        services.sweep_applications(now=T0 + seconds(tick))
    assert not Application.objects.exists()
    assert [e.type for e in events()] == ["app_registered", "app_stale", "app_removed"]
    assert events("app_removed")[0].payload["app_id"] == "app-1"


def test_it_unregisters_an_app_that_says_goodbye():
    register(now=T0)
    assert services.unregister_application("app-1", now=T0 + seconds(1)) is not None
    assert not Application.objects.exists()
    assert events()[-1].type == "app_unregistered"
    assert services.unregister_application("app-1", now=T0 + seconds(2)) is None


def test_it_gives_apps_a_full_timeout_after_the_dashboard_was_down():
    register("a", now=T0)
    register("b", now=T0 + seconds(20))
    SweepMark.objects.create(name="applications", last_run=T0 + seconds(25))
    # The dashboard was down from 25 s to 300 s: nobody heartbeated into it.
    restart = T0 + seconds(300)
    result = services.sweep_applications(now=restart)
    assert result == {"preserved": 2, "stale": 0, "removed": 0}
    assert Application.objects.filter(status=AppStatus.ACTIVE).count() == 2
    assert events("app_stale") == []
    assert services.sweep_applications(now=restart + seconds(29))["stale"] == 0
    assert services.sweep_applications(now=restart + seconds(30))["stale"] == 2


@override_settings(SOLLOL_APP_STALE_AFTER=5, SOLLOL_APP_REMOVE_AFTER=10)
def test_it_follows_the_configured_timeouts():
    register(now=T0)
    SweepMark.objects.create(name="applications", last_run=T0)
    assert services.sweep_applications(now=T0 + seconds(5))["stale"] == 1
    assert services.sweep_applications(now=T0 + seconds(10))["removed"] == 1


def test_an_apps_availability_is_the_share_of_the_window_it_was_active():
    register(now=T0)
    register("app-2", now=T0 + seconds(60), name="Late App")
    SweepMark.objects.create(name="applications", last_run=T0 + seconds(30))
    services.mark_stale(now=T0 + seconds(30))  # app-1: stale from 30 s
    heartbeat(now=T0 + seconds(90))  # ... active again from 90 s
    shares = availability(
        list(Application.objects.all()), window=120, now=T0 + seconds(120)
    )
    # app-1: active 0-30 and 90-120 of 120 s; app-2: all of the 60 s it existed.
    assert shares == {"app-1": 0.5, "app-2": 1.0}
    # Over a window after its last change, the state it is in counts throughout.
    later = availability(
        list(Application.objects.all()), window=20, now=T0 + seconds(120)
    )
    assert later == {"app-1": 1.0, "app-2": 1.0}


def test_unregistrations_in_one_batch_are_written_together_in_arrival_order():
    """The group-commit lane takes unregistrations too (a deploy stopping a
    thousand agents at once); an app that stops and starts again within one
    batch (a quick restart) ends registered, one that starts and stops ends gone."""
    Write = services.Write
    for app_id in ("leaving-1", "leaving-2", "restarting"):
        register(app_id)
    results = services.apply_writes(
        [
            (Write.UNREGISTER, "leaving-1"),
            (Write.UNREGISTER, "restarting"),
            (Write.REGISTER, AppReport(app_id="restarting", name="Back")),
            (Write.UNREGISTER, "leaving-2"),
            (Write.REGISTER, AppReport(app_id="brief", name="Brief")),
            (Write.UNREGISTER, "brief"),
            (Write.UNREGISTER, "ghost"),
            (Write.HEARTBEAT, AppReport(app_id="leaving-1")),
        ],
        now=T0 + seconds(1),
    )
    assert results == [
        True,
        True,
        ("restarting", True),
        True,
        ("brief", True),
        True,
        False,
        services.HeartbeatResult.NOT_FOUND,  # after its unregistration
    ]
    assert list(Application.objects.values_list("app_id", flat=True)) == ["restarting"]
    gone = Event.objects.filter(type="app_unregistered")
    assert sorted(event.payload["app_id"] for event in gone) == [
        "brief",
        "leaving-1",
        "leaving-2",
        "restarting",
    ]

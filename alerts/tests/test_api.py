"""/api/alerts: what people see and change, and bad input refused by field."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from activity.models import Event
from alerts import services
from alerts.choices import AlertState
from alerts.models import Alert, Channel, Delivery, Rule, Silence
from network.models import OllamaNode

pytestmark = pytest.mark.django_db

HOST = {"HTTP_HOST": "127.0.0.1"}


@pytest.fixture(autouse=True)
def rules():
    services.ensure_builtin_rules()


def post(client, path, body):
    return client.post(path, body, content_type="application/json", **HOST)


def patch(client, path, body):
    return client.patch(path, body, content_type="application/json", **HOST)


def firing_alert() -> Alert:
    now = timezone.now()
    OllamaNode.objects.create(
        url="http://127.0.0.2:11434",
        host="127.0.0.2",
        port=11434,
        source="config",
        status="offline",
        created_at=now,
    )
    Rule.objects.update(for_seconds=0)
    services.evaluate(now)
    return Alert.objects.get(rule__name="node_down")


def test_alerts_list_and_acknowledge(client):
    alert = firing_alert()
    body = client.get("/api/alerts", **HOST).json()
    assert body["firing"] >= 1
    [listed] = [a for a in body["alerts"] if a["rule"] == "node_down"]
    assert listed["subject"] == "127.0.0.2:11434" and listed["state"] == "firing"
    acked = post(client, f"/api/alerts/{alert.id}/ack", {"by": "ops"}).json()
    assert acked["acked_by"] == "ops" and acked["acked_at"] is not None
    assert client.get("/api/alerts?state=resolved", **HOST).json()["alerts"] == []
    assert client.get("/api/alerts?state=nope", **HOST).status_code == 400


def test_rules_are_listed_changed_and_added(client):
    names = {r["name"] for r in client.get("/api/alerts/rules", **HOST).json()["rules"]}
    assert {"node_down", "backend_down", "app_stale", "gpu_memory_high"} <= names
    changed = patch(
        client,
        "/api/alerts/rules/gpu_memory_high",
        {"threshold": 0.8, "for_seconds": 60},
    ).json()
    assert (changed["threshold"], changed["for_seconds"]) == (0.8, 60.0)
    added = post(
        client,
        "/api/alerts/rules",
        {
            "name": "lab-down",
            "kind": "node_down",
            "subjects": "10.1.*",
            "severity": "info",
        },
    )
    assert added.status_code == 201 and added.json()["subjects"] == "10.1.*"
    assert client.delete("/api/alerts/rules/node_down", **HOST).status_code == 400
    assert client.delete("/api/alerts/rules/lab-down", **HOST).status_code == 204


@pytest.mark.parametrize(
    "path, method, body, field",
    [
        ("/api/alerts/rules/node_down", patch, {"for_seconds": "soon"}, "for_seconds"),
        ("/api/alerts/rules/node_down", patch, {"for_seconds": -1}, "for_seconds"),
        ("/api/alerts/rules/node_down", patch, {"severity": "dire"}, "severity"),
        ("/api/alerts/rules/node_down", patch, {"enabled": "yes"}, "enabled"),
        ("/api/alerts/rules", post, {"name": "x", "kind": "nonsense"}, "kind"),
        ("/api/alerts/rules", post, {"kind": "node_down"}, "name"),
        (
            "/api/alerts/rules",
            post,
            {"name": "node_down", "kind": "node_down"},
            "exists",
        ),
        ("/api/alerts/silences", post, {"rule": "node_down"}, "duration_seconds"),
        (
            "/api/alerts/silences",
            post,
            {"rule": "node_down", "duration_seconds": 60, "created_by": "ops"},
            "comment",
        ),
        ("/api/alerts/silences", post, {"duration_seconds": 60}, "subject"),
        ("/api/alerts/silences", post, ["not", "an", "object"], "object"),
        ("/api/alerts/rules/node_down", patch, {"labels": "rack=a"}, "labels"),
        ("/api/alerts/rules/node_down", patch, {"labels": {"a-b": "x"}}, "a-b"),
        ("/api/alerts/rules/node_down", patch, {"labels": {"rack": 1}}, "labels.rack"),
        (
            "/api/alerts/rules/node_down",
            patch,
            {"labels": {f"k{i}": "v" for i in range(33)}},
            "at most 32",
        ),
        (
            "/api/alerts/silences",
            post,
            {"labels": {"1rack": "a"}, "duration_seconds": 60},
            "1rack",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, path, method, body, field):
    response = method(client, path, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]


def test_silences_are_made_listed_and_ended(client):
    made = post(
        client,
        "/api/alerts/silences",
        {
            "subject": "127.0.0.2:*",
            "duration_seconds": 3600,
            "created_by": "ops",
            "comment": "<b>maintenance</b>",
        },
    )
    assert made.status_code == 201
    silence = made.json()
    assert (
        silence["comment"] == "<b>maintenance</b>"
    )  # kept as text; escaped when shown
    listed = client.get("/api/alerts/silences", **HOST).json()["silences"]
    assert [s["id"] for s in listed] == [silence["id"]]
    ended = client.delete(f"/api/alerts/silences/{silence['id']}", **HOST)
    assert ended.status_code == 204
    assert client.get("/api/alerts/silences", **HOST).json()["silences"] == []
    assert Silence.objects.get().ends_at <= timezone.now()


def test_a_silence_marks_what_it_covers_at_once_and_every_viewer_hears(client):
    alert = firing_alert()
    made = post(
        client,
        "/api/alerts/silences",
        {
            "rule": "node_*",
            "subject": "127.0.0.2:*",
            "duration_seconds": 600,
            "created_by": "ops",
            "comment": "rack 2 power work",
        },
    ).json()
    # Shown silenced before any evaluation round, and in the overview.
    alert.refresh_from_db()
    assert alert.silenced is True
    body = client.get("/api/alerts", **HOST).json()
    assert body["silenced"] == 1
    assert [s["id"] for s in body["silences"]] == [made["id"]]
    [event] = Event.objects.filter(stream="alerts", type="silence_created")
    assert "rack 2 power work" in event.message and event.payload["alerts"] == 1
    # Ended: unmarked at once, and the next round tells it (it was never told).
    path = f"/api/alerts/silences/{made['id']}"
    assert client.delete(path, **HOST).status_code == 204
    alert.refresh_from_db()
    assert alert.silenced is False
    assert Event.objects.filter(stream="alerts", type="silence_ended").count() == 1
    assert client.get("/api/alerts", **HOST).json()["silences"] == []
    assert client.delete(path, **HOST).status_code == 404
    services.evaluate(timezone.now())
    assert Delivery.objects.filter(status="firing").count() == 0  # no channel here
    assert Alert.objects.get(id=alert.id).notified_at is not None


def test_with_tokens_a_staff_session_writes_with_its_csrf_token_and_nobody_else(
    settings, django_user_model
):
    settings.SOLLOL_API_TOKENS = ["t0ken"]
    alert = firing_alert()
    path = f"/api/alerts/{alert.id}/ack"
    anonymous = Client(enforce_csrf_checks=True)
    assert post(anonymous, path, {"by": "x"}).status_code == 401
    viewer = Client(enforce_csrf_checks=True)
    viewer.force_login(django_user_model.objects.create_user("viewer", password="p"))
    assert post(viewer, path, {"by": "x"}).status_code == 401
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(
        django_user_model.objects.create_user("ops", password="p", is_staff=True)
    )
    refused = post(staff, path, {"by": "ops"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    page = staff.get("/", **HOST)
    token = re.search(rb'name="csrf-token" content="([^"]+)"', page.content)[1]
    assert b'"can_write": true' in page.content and b'"user": "ops"' in page.content
    done = staff.post(
        path,
        {"by": "ops"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token.decode(),
        **HOST,
    )
    assert done.status_code == 200 and done.json()["acked_by"] == "ops"
    # A token still works without a session, and the page tells a viewer no.
    assert b'"can_write": false' in viewer.get("/", **HOST).content


def test_a_channels_secret_is_never_shown(client):
    Channel.objects.create(name="hook", kind="webhook", url="http://x/", secret="s3")
    [channel] = client.get("/api/alerts/channels", **HOST).json()["channels"]
    assert channel["has_secret"] is True
    assert "s3" not in str(channel)


def test_writes_need_the_write_token_when_one_is_set(client, settings):
    settings.SOLLOL_API_TOKENS = ["w"]
    response = post(client, "/api/alerts/rules", {"name": "x", "kind": "node_down"})
    assert response.status_code == 401


def test_resolved_alerts_are_listed_with_their_end(client):
    alert = firing_alert()
    OllamaNode.objects.update(status="healthy")
    services.evaluate(timezone.now() + dt.timedelta(seconds=1))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    resolved = client.get("/api/alerts?state=resolved", **HOST).json()["alerts"]
    [listed] = [a for a in resolved if a["rule"] == "node_down"]
    assert listed["ended_at"] is not None


def test_channels_are_made_changed_and_removed_and_checked(client, settings):
    settings.SOLLOL_ALERT_WEBHOOKS = []
    made = post(
        client,
        "/api/alerts/channels",
        {
            "name": "ops",
            "kind": "webhook",
            "url": "http://127.0.0.1:9/hook",
            "secret": "s",
        },
    )
    assert made.status_code == 201 and made.json()["has_secret"] is True
    assert "secret" not in made.json()
    changed = patch(client, "/api/alerts/channels/ops", {"min_severity": "critical"})
    assert changed.json()["min_severity"] == "critical"
    assert client.delete("/api/alerts/channels/ops", **HOST).status_code == 204
    Channel.objects.create(
        name="webhook-1", kind="webhook", url="http://x/", source="env"
    )
    assert (
        patch(client, "/api/alerts/channels/webhook-1", {"enabled": False}).status_code
        == 400
    )


@pytest.mark.parametrize(
    "body, words",
    [
        ({"kind": "webhook", "url": "http://169.254.169.254/latest"}, "link-local"),
        ({"kind": "webhook", "url": "http://[fd00:ec2::254]/"}, "metadata"),
        ({"kind": "webhook", "url": "http://8.8.8.8/"}, "SOLLOL_ALLOWED_NODE_CIDRS"),
        ({"kind": "webhook", "url": "file:///etc/passwd"}, "url must be a http"),
        ({"kind": "carrier-pigeon", "url": "http://127.0.0.1/"}, "kind must be"),
        ({"kind": "email", "recipients": "not an address"}, "recipients"),
        (
            {"kind": "webhook", "url": "http://127.0.0.1/", "min_severity": "x"},
            "min_severity",
        ),
    ],
)
def test_a_channel_going_where_it_may_not_is_refused(client, body, words):
    response = post(client, "/api/alerts/channels", {"name": "bad", **body})
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert not Channel.objects.filter(name="bad").exists()


def test_rules_and_silences_take_label_selectors(client):
    changed = patch(
        client, "/api/alerts/rules/node_down", {"labels": {"rack": "a*", "env": "prod"}}
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["labels"] == {"rack": "a*", "env": "prod"}
    assert Rule.objects.get(name="node_down").labels == {"rack": "a*", "env": "prod"}
    made = post(
        client,
        "/api/alerts/silences",
        {
            "labels": {"rack": "b"},  # labels alone are enough: not everything
            "duration_seconds": 600,
            "created_by": "ops",
            "comment": "rack b is being recabled",
        },
    )
    assert made.status_code == 201, made.content
    assert made.json()["labels"] == {"rack": "b"}
    [event] = Event.objects.filter(type="silence_created")
    assert "labels rack=b" in event.message and event.payload["labels"] == {"rack": "b"}

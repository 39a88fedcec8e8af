"""The alerts API answers exactly what its OpenAPI schema describes (strictly:
no undescribed field, no missing one, no other type)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from alerts import services
from alerts.choices import DeliveryState
from alerts.models import Channel
from alerts.tests.receivers import Receiver
from alerts.tests.test_api import HOST, firing_alert, patch, post
from alerts.tests.test_delivery import settle
from network.models import OllamaNode
from tests.openapi import assert_described


def described(response, path: str, method: str = "GET"):
    """Return the answer's body once it is what the schema says path answers."""
    assert response.status_code < 300, (path, response.content)
    body = response.json() if response.content else None
    assert_described(path, method, body, response.status_code)
    return body


@pytest.fixture
def rules(db, settings):
    settings.SOLLOL_ALERT_WEBHOOKS = []
    services.ensure_builtin_rules()


def test_alerts_and_silences_answer_as_described(client, rules):
    alert = firing_alert()
    # Another rule on the same node that is true but not yet for long enough.
    rule = {"name": "lab-down", "kind": "node_down", "for_seconds": 600}
    post(client, "/api/alerts/rules", {**rule, "subjects": "127.0.0.*"})
    services.evaluate(timezone.now())
    path = f"/api/alerts/{alert.id}/ack"
    acked = described(post(client, path, {"by": "ops"}), path, "POST")
    assert acked["acked_by"] == "ops"
    covers = {"rule": "node_*", "subject": "127.0.0.2:*", "created_by": "ops"}
    made = post(
        client,
        "/api/alerts/silences",
        {**covers, "duration_seconds": 600, "comment": "rack 2 power work"},
    )
    silence = described(made, "/api/alerts/silences", "POST")

    overview = described(client.get("/api/alerts", **HOST), "/api/alerts")
    assert {(a["rule"], a["state"], a["silenced"]) for a in overview["alerts"]} >= {
        ("node_down", "firing", True),
        ("lab-down", "pending", False),
    }
    described(client.get("/api/alerts?state=pending", **HOST), "/api/alerts")
    described(client.get("/api/alerts/silences", **HOST), "/api/alerts/silences")
    path = f"/api/alerts/silences/{silence['id']}"
    described(client.delete(path, **HOST), path, "DELETE")

    OllamaNode.objects.update(status="healthy")
    services.evaluate(timezone.now() + dt.timedelta(seconds=1))
    path = "/api/alerts?state=resolved"
    resolved = described(client.get(path, **HOST), path)["alerts"]
    [ended] = [a for a in resolved if a["rule"] == "node_down"]
    assert ended["ended_at"] is not None and ended["acked_by"] == "ops"


def test_rules_answer_as_described(client, rules):
    rule = {"name": "lab-down", "kind": "node_down", "subjects": "10.1.*"}
    added = post(client, "/api/alerts/rules", rule)
    assert described(added, "/api/alerts/rules", "POST")["source"] == "api"
    described(client.get("/api/alerts/rules", **HOST), "/api/alerts/rules")
    path = "/api/alerts/rules/gpu_memory_high"  # built in, with a threshold
    described(client.get(path, **HOST), path)
    described(patch(client, path, {"threshold": 0.8, "enabled": False}), path, "PATCH")
    path = "/api/alerts/rules/lab-down"
    described(client.delete(path, **HOST), path, "DELETE")


def test_channels_answer_as_described(client, rules):
    hook = {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook"}
    made = post(client, "/api/alerts/channels", {**hook, "secret": "s"})
    assert described(made, "/api/alerts/channels", "POST")["has_secret"] is True
    mail = {"name": "mail", "kind": "email", "recipients": "ops@example.com"}
    made = post(client, "/api/alerts/channels", mail)  # through SOLLOL_SMTP_URL
    assert described(made, "/api/alerts/channels", "POST")["url"] == ""
    Channel.objects.create(
        name="webhook-1", kind="webhook", url="http://127.0.0.1:9/", source="env"
    )
    described(client.get("/api/alerts/channels", **HOST), "/api/alerts/channels")
    path = "/api/alerts/channels/ops"
    described(client.get(path, **HOST), path)
    described(patch(client, path, {"min_severity": "critical"}), path, "PATCH")
    described(client.delete(path, **HOST), path, "DELETE")


@pytest.mark.django_db(transaction=True)
def test_channel_tests_and_the_delivery_log_answer_as_described(client):
    broken, fine = Receiver(answers=[500]), Receiver()
    try:
        Channel.objects.create(name="broken", kind="webhook", url=broken.url)
        Channel.objects.create(name="fine", kind="webhook", url=fine.url)
        settled = {}
        for name, state in (
            ("broken", DeliveryState.QUEUED),
            ("fine", DeliveryState.SENT),
        ):
            path = f"/api/alerts/channels/{name}/test"
            queued = described(post(client, path, {}), path, "POST")
            settled[name] = settle(queued["delivery"], state)
    finally:
        broken.close()
        fine.close()
    assert settled["broken"].attempts == 1 and settled["fine"].sent_at is not None

    overview = described(client.get("/api/alerts", **HOST), "/api/alerts")
    assert [c["name"] for c in overview["channels_failing"]] == ["broken"]
    path = "/api/alerts/channels/broken"
    assert described(client.get(path, **HOST), path)["failing_since"] is not None
    path = "/api/alerts/deliveries"
    log = described(client.get(path, **HOST), path)["deliveries"]
    assert {d["channel"]: d["state"] for d in log} == {
        "broken": "queued",
        "fine": "sent",
    }

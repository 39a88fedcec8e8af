"""A real Prometheus Alertmanager takes the dashboard's alerts through its API v2.

Needs Debian's `prometheus-alertmanager` (.ci/run installs it). The test starts its
own on 127.0.0.1 (the `alertmanager` fixture, tests/conftest.py).
"""

from __future__ import annotations

import time

import pytest
import requests
from django.utils import timezone

from alerts import delivery
from alerts.choices import ChannelKind, DeliveryState
from alerts.models import Channel, Delivery

pytestmark = pytest.mark.django_db(transaction=True)


def send(channel: Channel, payload: dict) -> None:
    now = timezone.now()
    queued = Delivery.objects.create(
        channel=channel,
        status=payload["status"],
        rule="node_down",
        payload=payload,
        next_attempt_at=now,
        created=now,
    )
    delivery.deliver_due()
    deadline = time.monotonic() + 10
    while Delivery.objects.get(id=queued.id).state != DeliveryState.SENT:
        assert time.monotonic() < deadline, Delivery.objects.get(
            id=queued.id
        ).last_error
        time.sleep(0.05)


def test_firing_and_resolved_alerts_reach_a_real_alertmanager(alertmanager):
    channel = Channel.objects.create(
        name="am", kind=ChannelKind.ALERTMANAGER, url=alertmanager
    )
    started = timezone.now().isoformat().replace("+00:00", "Z")
    alert = {
        "rule": "node_down",
        "subject": "127.0.0.2:11434",
        "severity": "critical",
        "started_at": started,
        "ended_at": None,
        "value": 1.0,
        "message": "node 127.0.0.2:11434 is down (offline)",
    }
    send(channel, {"status": "firing", "alerts": [alert], "message": "x"})
    [listed] = requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert listed["labels"] == {
        "alertname": "node_down",
        "subject": "127.0.0.2:11434",
        "severity": "critical",
        "service": "sollol",
    }
    assert listed["annotations"]["summary"] == alert["message"]
    assert listed["status"]["state"] == "active"
    ended = timezone.now().isoformat().replace("+00:00", "Z")
    send(
        channel,
        {
            "status": "resolved",
            "alerts": [{**alert, "ended_at": ended}],
            "message": "x",
        },
    )
    active = requests.get(
        f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=5
    ).json()
    assert active == []  # resolved: Alertmanager no longer holds it active

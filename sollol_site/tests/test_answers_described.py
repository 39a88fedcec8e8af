"""GET /api/network/health answers exactly what the OpenAPI schema describes
(strictly: no undescribed field, no missing one, no other type)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from applications.tests.factories import register
from network.probes import NodeProbe
from network.services import lifecycle, recording, rounds
from tests.openapi import assert_described

pytestmark = pytest.mark.django_db

PATH = "/api/network/health"


def health(client) -> dict:
    response = client.get(PATH)
    assert response.status_code == 200
    assert_described(PATH, "GET", response.json())
    return response.json()


def test_the_health_answers_as_described_before_and_after_probing(client):
    before = health(client)
    assert (before["status"], before["probe_cycle"]) == ("unknown", None)

    now = timezone.now()
    up, down = lifecycle.ensure_nodes(
        ["127.0.0.2", "127.0.0.3"], source="config", now=now
    )
    lifecycle.add_node("http://8.8.8.8:11434", now=now)  # outside the allowed CIDRs
    lifecycle.ensure_backends(["127.0.0.4:50052"], source="config", now=now)
    register("app-1", now)
    answered = NodeProbe(ok=True, answered=True, latency_ms=5.0, version="1")
    refused = NodeProbe(ok=False, answered=False, error="refused")
    recording.record_node_probes([(up.id, answered), (down.id, refused)], now=now)
    report = {"seconds": 0.2, "nodes": 2, "backends": 1, "changes": 2}
    rounds.record_cycle(report, started_at=now)
    after = health(client)
    assert after["status"] == "degraded" and after["notes"]
    assert after["applications_active"] == 1
    assert after["probe_cycle"]["round"] is None

    # Sharded: the second round says what the first left unprobed.
    for _ in range(2):
        round, _, _ = rounds.begin_round()
        rounds.record_cycle(report, started_at=now, round=round)
    sharded = health(client)["probe_cycle"]
    assert sharded["round"] == 2 and sharded["missed"]["round"] == 1

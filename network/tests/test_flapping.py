"""A node that keeps going up and down is reported once, not at every probe."""

from __future__ import annotations

import pytest
from django.utils import timezone

from activity import prometheus
from activity.models import Event
from network.choices import Source
from network.models import OllamaNode
from network.probes import NodeProbe
from network.services import lifecycle, recording

pytestmark = pytest.mark.django_db

UP = NodeProbe(ok=True, answered=True, latency_ms=5.0, version="0.12.3")
DOWN = NodeProbe(ok=False, answered=False, error="connection refused")


def probe(node: OllamaNode, result: NodeProbe) -> str:
    recording.record_node_probes([(node.id, result)], now=timezone.now())
    node.refresh_from_db()
    return node.status


def changes() -> list[tuple[str, str]]:
    return [
        (e.payload["old_status"], e.payload["new_status"])
        for e in Event.objects.filter(type="status_change").order_by("id")
    ]


def test_a_flapping_node_makes_one_event_then_one_more_when_it_settles(client):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.CONFIG, now=timezone.now()
    )
    statuses = [probe(node, UP if i % 2 == 0 else DOWN) for i in range(40)]
    # Four changes of mind, then flapping: 40 probes, not 40 events.
    assert statuses[:6] == ["healthy", "unhealthy"] * 2 + ["healthy", "flapping"]
    assert set(statuses[5:]) == {"flapping"}
    assert changes() == [
        ("unknown", "healthy"),
        ("healthy", "unhealthy"),
        ("unhealthy", "healthy"),
        ("healthy", "unhealthy"),
        ("unhealthy", "healthy"),
        ("healthy", "flapping"),
    ]
    assert "keeps changing" in Event.objects.last().payload["reason"]
    health = client.get("/api/network/health").json()
    assert health["nodes_flapping"] == 1 and "up and down" in health["reason"]
    # Settled: it leaves flapping once its score has decayed, with one event.
    settled = [probe(node, UP) for _ in range(10)]
    assert settled[-1] == "healthy"
    assert settled.count("flapping") == 8  # the first is a change; then 0.8**8 * 5 < 1
    assert changes()[-1] == ("flapping", "healthy")
    assert len(changes()) == 7
    assert Event.objects.last().payload["reason"] == "stopped flapping"


def test_a_flapping_node_that_dies_is_offline_as_soon_as_a_steady_one_would_be():
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.CONFIG, now=timezone.now()
    )
    for i in range(13):  # up, down, … up
        probe(node, UP if i % 2 == 0 else DOWN)
    assert node.status == "flapping"
    died = [probe(node, DOWN) for _ in range(4)]
    # Offline after SOLLOL_PROBE_OFFLINE_AFTER (3) failures in a row, as always.
    assert died == ["flapping", "flapping", "offline", "offline"]
    assert changes()[-1] == ("flapping", "offline")
    assert "3 probes failed in a row" in Event.objects.last().payload["reason"]


def test_a_node_that_fails_now_and_then_is_not_called_flapping():
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.CONFIG, now=timezone.now()
    )
    pattern = ([UP] * 9 + [DOWN]) * 4  # one failure in ten probes
    statuses = [probe(node, result) for result in pattern]
    assert "flapping" not in statuses
    assert statuses[-1] == "unhealthy" and statuses[-2] == "healthy"


def test_a_flapping_node_is_usable_exactly_when_its_latest_probe_answered(client):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.CONFIG, now=timezone.now()
    )
    for i in range(12):  # up, down, … down: flapping, and down just now
        probe(node, UP if i % 2 == 0 else DOWN)
    assert node.status == "flapping"

    def seen() -> tuple[bool, str, float]:
        [listed] = client.get("/api/network/nodes").json()["nodes"]
        health = client.get("/api/network/health").json()
        up = prometheus.exposition().decode()
        line = next(x for x in up.splitlines() if x.startswith("sollol_node_up{"))
        assert listed["loaded_models_known"] == listed["usable"]
        return listed["usable"], health["status"], float(line.rsplit(" ", 1)[1])

    # One rule everywhere: the node list, the fleet's health and Prometheus.
    assert seen() == (False, "critical", 0.0)
    probe(node, UP)
    assert node.status == "flapping"
    assert seen() == (True, "degraded", 1.0)

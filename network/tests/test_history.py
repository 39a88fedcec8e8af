"""History as the product keeps it: probe cycles against a simulated fleet and
the fleet's sampler write it, the API reads it back (activity/history.py)."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils import timezone

from activity import history
from network.choices import Source
from network.cycle import run_cycle
from network.models import OllamaNode, RpcBackend
from network.services import lifecycle
from simulator.ollama import running_fleet
from simulator.rpc import running_rpc_server

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(SOLLOL_PROBE_TIMEOUT=0.6)
def test_probes_and_the_fleet_sampler_write_what_the_api_shows(client):
    with running_fleet(2, base="127.0.0.2", port=0, seed=5) as fleet:
        lifecycle.ensure_nodes(fleet.urls, source=Source.CONFIG, now=timezone.now())
        run_cycle(now=timezone.now())
        history.sample(now=timezone.now())
        fleet.nodes[0].die()
        run_cycle(now=timezone.now())
        run_cycle(now=timezone.now())
        history.sample(now=timezone.now())
    dead = OllamaNode.objects.get(url=fleet.urls[0])
    answer = client.get(f"/api/network/nodes/{dead.id}/history?window=15m").json()
    assert answer["resolution"] == "raw"
    assert [p["usable"] for p in answer["points"]] == [1.0, 0.0, 0.0]
    first, *_, last = answer["points"]
    assert first["latency_ms"] is not None and last["latency_ms"] is None
    # What a dead node's probe could not read is not kept as if measured.
    assert first["loaded_models"] is not None and last["loaded_models"] is None
    assert answer["availability"] == pytest.approx(1 / 3, abs=1e-6)

    fleet_answer = client.get("/api/network/history?window=1h").json()
    assert [p["nodes_usable"] for p in fleet_answer["points"]] == [2, 1]
    assert [p["nodes_total"] for p in fleet_answer["points"]] == [2, 2]
    assert [p["serving"] for p in fleet_answer["points"]] == [1.0, 1.0]

    shares = client.get("/api/network/availability?window=1h").json()
    assert [(n["url"], n["measurements"]) for n in shares["nodes"]] == [
        (fleet.urls[0], 3),
        (fleet.urls[1], 3),
    ]
    assert [n["availability"] for n in shares["nodes"]] == [
        pytest.approx(1 / 3, abs=1e-6),
        1.0,
    ]
    many = client.get("/api/network/nodes/history?window=5m").json()
    assert many["fields"] == ["t", "usable", "latency_ms"]
    assert [row[1] for row in many["subjects"][str(dead.id)]] == [1.0, 0.0, 0.0]
    assert len(many["subjects"]) == 2


def test_history_answers_bad_requests_in_json(client):
    for path, status in (
        ("/api/network/nodes/999/history", 404),
        ("/api/network/backends/999/history", 404),
        ("/api/network/history?window=forever", 400),
        ("/api/network/history?window=400d", 400),
        ("/api/network/nodes/history?window=7d", 400),
        ("/api/history/nothing", 404),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        assert "error" in response.json(), path
    assert client.get("/api/history/apps?window=24h").json()["points"] == []


@override_settings(SOLLOL_PROBE_TIMEOUT=0.5)
def test_a_backends_history_keeps_its_device_memory_and_its_death(client):
    with running_rpc_server(
        "127.0.0.2", 0, protocol="3.0.0", devices=[(6_000, 8_000)]
    ) as server:
        lifecycle.ensure_backends(
            [server.address], source=Source.CONFIG, now=timezone.now()
        )
        run_cycle(now=timezone.now())
        server.die()
        run_cycle(now=timezone.now())
    backend = RpcBackend.objects.get()
    answer = client.get(f"/api/network/backends/{backend.id}/history").json()
    assert [p["usable"] for p in answer["points"]] == [1.0, 0.0]
    assert [p["memory_used_bytes"] for p in answer["points"]] == [2_000, None]
    assert answer["availability"] == 0.5

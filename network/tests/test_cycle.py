"""A whole probe cycle against a simulated fleet, written to the real database."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest
from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from activity.metrics import parse_activity, record_requests
from activity.models import Event, RequestRecord
from network.choices import Source
from network.cycle import run_cycle
from network.models import OllamaNode, RpcBackend
from network.services import lifecycle
from network.tests.held import assert_busy_while_held_then_online_then_offline
from simulator.ollama import running_fleet
from simulator.rpc import running_rpc_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fleet():
    with running_fleet(3, base="127.0.0.2", port=0, seed=3) as fleet:
        lifecycle.ensure_nodes(fleet.urls, source=Source.CONFIG, now=timezone.now())
        yield fleet


def statuses() -> dict[str, str]:
    return dict(OllamaNode.objects.values_list("url", "status"))


@override_settings(SOLLOL_PROBE_TIMEOUT=0.6, SOLLOL_PROBE_SLOW_AFTER=0.3)
def test_it_probes_every_node_and_records_what_changed(fleet):
    report = run_cycle(now=timezone.now())
    assert report.nodes == 3 and report.changes == 3
    assert set(statuses().values()) == {"healthy"}
    node = OllamaNode.objects.get(url=fleet.urls[0])
    assert node.version and node.disk_models and node.latency_ms is not None
    fleet.nodes[0].die()
    fleet.nodes[1].set_error(503)
    report = run_cycle(now=timezone.now())
    assert report.changes == 2
    assert statuses() == {
        fleet.urls[0]: "unhealthy",
        fleet.urls[1]: "degraded",
        fleet.urls[2]: "healthy",
    }
    assert run_cycle(now=timezone.now()).changes == 0  # quiet: no events


@override_settings(SOLLOL_PROBE_TIMEOUT=0.8)
def test_it_records_fast_nodes_without_waiting_for_a_hanging_one(fleet):
    fleet.nodes[2].hang()
    report = run_cycle(now=timezone.now())
    assert report.seconds >= 0.8
    written = {
        e.payload["node"]: e.timestamp
        for e in Event.objects.filter(stream="nodes", type="status_change")
    }
    hung = written[fleet.urls[2]]
    for url in fleet.urls[:2]:
        assert (hung - written[url]).total_seconds() > 0.5


@override_settings(SOLLOL_PROBE_TIMEOUT=0.5)
def test_it_probes_rpc_backends_in_the_same_cycle():
    with running_rpc_server(
        "127.0.0.2", 0, protocol="3.0.0", devices=[(6_000, 8_000)]
    ) as server:
        lifecycle.ensure_backends(
            [f"127.0.0.2:{server.port}"], source=Source.CONFIG, now=timezone.now()
        )
        run_cycle(now=timezone.now())
        backend = RpcBackend.objects.get()
        assert (backend.status, backend.protocol) == ("online", "3.0.0")
        assert backend.devices == [{"index": 0, "free": 6_000, "total": 8_000}]
        server.die()
        run_cycle(now=timezone.now())
        backend.refresh_from_db()
        assert backend.status == "offline"
    assert [e.type for e in Event.objects.filter(stream="backends")] == [
        "backend_connected",
        "backend_disconnected",
    ]


@override_settings(SOLLOL_PROBE_TIMEOUT=0.3, SOLLOL_RPC_SESSION_INTERVAL=12)
def test_it_shows_a_backend_busy_for_as_long_as_another_client_holds_it():
    with running_rpc_server("127.0.0.3", 0, protocol="7.0.0") as server:
        started = timezone.now()
        lifecycle.ensure_backends([server.address], source=Source.CONFIG, now=started)
        run_cycle(now=started)
        accepted = server.connections_accepted
        server.attach()
        seen = []
        # Past the server's queue of two: later connects time out. Every 5 s, a
        # session every 12 s, as the beat would.
        for cycle in range(1, 7):
            run_cycle(now=started + dt.timedelta(seconds=5 * cycle))
            seen.append(RpcBackend.objects.get().status)
        server.detach()
        # Let it take the two connections still queued: a connect refused a place
        # in the queue is retried only after 1 s, past this probe's timeout.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            server.connections_accepted < accepted + 2 or server.open_connections
        ):
            time.sleep(0.01)
        run_cycle(now=started + dt.timedelta(seconds=35))
        seen.append(RpcBackend.objects.get().status)
        server.die()
        run_cycle(now=started + dt.timedelta(seconds=40))
        seen.append(RpcBackend.objects.get().status)

    assert_busy_while_held_then_online_then_offline(seen)
    assert server.crashes == 0


@override_settings(SOLLOL_PROBE_TIMEOUT=1.0, SOLLOL_REPORTED_WINDOW=60)
def test_a_node_too_busy_for_work_is_degraded_by_what_routers_report(fleet):
    """Ollama says "server busy" (503) to inference only; probes see a fine node."""
    started = timezone.now()
    run_cycle(now=started)
    busy = fleet.nodes[0]
    busy.set_queue_full()
    model = busy.disk_models()[0]
    address = OllamaNode.objects.get(url=fleet.urls[0]).address
    reports = []
    for _ in range(6):  # a router's requests, and what it reports of them
        answer = httpx.post(
            busy.url + "/api/generate",
            json={"model": model, "prompt": "hi", "stream": False},
            timeout=5,
        )
        assert answer.status_code == 503 and "server busy" in answer.json()["error"]
        reports.append({"node": address, "model": model, "latency_ms": 2, "ok": False})
    record_requests(parse_activity({"requests": reports}), now=started)

    run_cycle(now=started + dt.timedelta(seconds=5))
    node = OllamaNode.objects.get(url=fleet.urls[0])
    assert node.status == "degraded"
    assert node.last_error == ""  # its own probe found nothing wrong
    change = Event.objects.filter(type="status_change").last()
    assert change.payload["reason"] == (
        "routers report 6 of 6 requests failed in the last 60 s"
    )
    assert statuses()[fleet.urls[1]] == "healthy"  # nobody reported on the others
    # The queue drains; once the failures are older than the window (the writer
    # stamps with the real clock: age the records instead), the node is healthy.
    busy.set_queue_full(False)
    RequestRecord.objects.update(timestamp=F("timestamp") - dt.timedelta(seconds=61))
    run_cycle(now=started + dt.timedelta(seconds=61))
    assert statuses()[fleet.urls[0]] == "healthy"


@override_settings(SOLLOL_PROBE_TIMEOUT=0.6)
def test_it_shows_operators_how_long_the_last_cycle_took(fleet, client):
    run_cycle(now=timezone.now())
    cycle = client.get("/api/network/health").json()["probe_cycle"]
    assert cycle["nodes"] == 3 and cycle["backends"] == 0
    assert 0 < cycle["seconds"] < 5


@override_settings(SOLLOL_PROBE_TIMEOUT=0.6)
def test_it_tells_what_the_models_in_memory_did(fleet):
    node = fleet.nodes[0]
    for name in [m["name"] for m in node.snapshot()["loaded"]]:
        node.unload(name)
    run_cycle(now=timezone.now())  # the baseline: no activity yet
    node.load("llama3.2:3b", size_vram=2_576_980_378)
    run_cycle(now=timezone.now())
    node.process("llama3.2:3b")
    run_cycle(now=timezone.now())
    fleet.nodes[1].die()  # a node that stops answering unloads nothing
    node.unload("llama3.2:3b")
    run_cycle(now=timezone.now())
    activity = [e.as_message() for e in Event.objects.filter(stream="ollama_activity")]
    address = node.url.removeprefix("http://")
    assert [(e["type"], e["node"], e["model"]) for e in activity] == [
        ("model_loaded", address, "llama3.2:3b"),
        ("model_processing", address, "llama3.2:3b"),
        ("model_unloaded", address, "llama3.2:3b"),
    ]
    assert activity[0]["message"] == f"✅ Model loaded on {address}: llama3.2:3b"
    assert activity[1]["vram_gb"] == 2.4
    assert activity[1]["message"] == (
        f"🔄 Processing on {address}: llama3.2:3b (VRAM: 2.40GB)"
    )

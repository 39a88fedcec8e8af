from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from activity.models import Event
from network.api.serializers import node_history
from network.choices import NodeStatus, Source
from network.models import OllamaNode
from network.probes import NodeProbe
from network.services import lifecycle, recording

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
OK = NodeProbe(
    ok=True,
    answered=True,
    latency_ms=12.0,
    version="0.12.3",
    loaded_models=[],
    disk_models=None,
)
DOWN = NodeProbe(ok=False, answered=False, error="connection refused or unreachable")
BUSY = NodeProbe(
    ok=False, answered=True, latency_ms=3.0, error="/api/version answered HTTP 503"
)
SLOW = NodeProbe(
    ok=True, answered=True, latency_ms=1500.0, version="0.12.3", loaded_models=[]
)


def node_events(type=None):
    rows = Event.objects.filter(stream="nodes").order_by("id")
    return list(rows.filter(type=type) if type else rows)


def make_node(url="127.0.0.2") -> OllamaNode:
    [node] = lifecycle.ensure_nodes([url], source=Source.CONFIG, now=T0)
    return node


def probe(node, result, at=T0):
    recording.record_node_probes([(node.id, result)], now=at)
    node.refresh_from_db()
    return node.status


def test_it_announces_a_node_once_however_often_it_is_found():
    lifecycle.ensure_nodes(
        ["127.0.0.2", "http://127.0.0.2:11434/"], source="config", now=T0
    )
    lifecycle.ensure_nodes(["127.0.0.2:11434"], source="application", now=T0)
    assert OllamaNode.objects.count() == 1
    [event] = node_events()
    message = event.as_message()
    assert message["type"] == "node_discovered"
    assert message["node"] == "http://127.0.0.2:11434"
    assert message["message"] == "✅ New node discovered: http://127.0.0.2:11434"
    assert OllamaNode.objects.get().source == "config"


def test_it_skips_bad_addresses_but_keeps_the_good_ones():
    created = lifecycle.ensure_nodes(
        ["not a host!", "127.0.0.4"], source="config", now=T0
    )
    assert [n.url for n in created] == ["http://127.0.0.4:11434"]


def test_it_records_what_a_healthy_probe_found():
    node = make_node()
    loaded = [
        {"name": "llama3.2:3b", "size": 3_000_000_000, "size_vram": 2_500_000_000}
    ]
    result = NodeProbe(
        ok=True,
        answered=True,
        latency_ms=8.0,
        version="0.12.3",
        loaded_models=loaded,
        disk_models=[{"name": "llama3.2:3b"}],
    )
    assert probe(node, result) == NodeStatus.HEALTHY
    assert node.version == "0.12.3"
    assert node.vram_used_bytes == 2_500_000_000
    assert node.disk_models == [{"name": "llama3.2:3b"}]
    assert node.last_seen == T0
    [change] = node_events("status_change")
    assert change.payload["old_status"] == "unknown"
    assert change.payload["new_status"] == "healthy"
    assert change.message == "Node http://127.0.0.2:11434: unknown → healthy"


@override_settings(SOLLOL_PROBE_OFFLINE_AFTER=3)
def test_it_calls_a_node_unhealthy_at_once_and_offline_after_repeated_failures():
    node = make_node()
    probe(node, OK)
    statuses = [probe(node, DOWN, T0 + dt.timedelta(seconds=i)) for i in range(1, 6)]
    assert statuses == ["unhealthy", "unhealthy", "offline", "offline", "offline"]
    transitions = [
        (e.payload["old_status"], e.payload["new_status"])
        for e in node_events("status_change")
    ]
    assert transitions == [
        ("unknown", "healthy"),
        ("healthy", "unhealthy"),
        ("unhealthy", "offline"),
    ]
    assert node.consecutive_failures == 5
    assert node.last_seen == T0  # the last time it answered


def test_it_calls_a_node_that_answers_with_errors_or_slowly_degraded():
    node = make_node()
    assert probe(node, BUSY) == NodeStatus.DEGRADED
    assert "503" in node.last_error
    other = make_node("127.0.0.3")
    assert probe(other, SLOW) == NodeStatus.DEGRADED
    assert "slow" in other.status_changes.first().reason


@override_settings(SOLLOL_PROBE_RECOVER_AFTER=2)
def test_it_needs_two_good_probes_to_leave_degraded():
    node = make_node()
    probe(node, BUSY)
    assert probe(node, OK) == NodeStatus.DEGRADED
    assert probe(node, OK) == NodeStatus.HEALTHY
    # … but a node that was down is back the moment it answers well.
    probe(node, DOWN)
    assert probe(node, OK) == NodeStatus.HEALTHY


def test_it_keeps_the_recent_status_history_of_a_node():
    node = make_node()
    for i, result in enumerate([OK, DOWN, OK, BUSY]):
        probe(node, result, T0 + dt.timedelta(seconds=i))
    history = node_history(node)
    assert [(h["old_status"], h["new_status"]) for h in history] == [
        ("healthy", "degraded"),
        ("unhealthy", "healthy"),
        ("healthy", "unhealthy"),
        ("unknown", "healthy"),
    ]


def test_it_ignores_results_for_a_node_removed_meanwhile():
    node = make_node()
    lifecycle.remove_node(node.id, now=T0)
    assert recording.record_node_probes([(node.id, DOWN)], now=T0) == 0
    assert node_events()[-1].type == "node_removed"


@override_settings(
    SOLLOL_OLLAMA_NODES=["127.0.0.8", "127.0.0.9:11500"],
    SOLLOL_RPC_BACKENDS=["127.0.0.8"],
    SOLLOL_DISCOVER_LOCALHOST=True,
)
def test_it_watches_configured_nodes_and_localhost():
    from network.models import RpcBackend

    lifecycle.sync_configured(now=T0)
    lifecycle.sync_configured(now=T0)
    assert dict(OllamaNode.objects.values_list("url", "source")) == {
        "http://127.0.0.8:11434": "config",
        "http://127.0.0.9:11500": "config",
        "http://127.0.0.1:11434": "localhost",
    }
    assert set(RpcBackend.objects.values_list("address", flat=True)) == {
        "127.0.0.8:50052",
        "127.0.0.1:50052",
    }


def make_backend(address="127.0.0.2:50052"):
    from network.models import RpcBackend

    lifecycle.ensure_backends([address], source=Source.CONFIG, now=T0)
    return RpcBackend.objects.get(address=address)


def backend_probe(backend, result, session=True, at=T0):
    recording.record_backend_probes([(backend.id, result, session)], now=at)
    backend.refresh_from_db()
    return backend.status


def test_it_follows_a_backend_through_its_life():
    from network.rpc import RpcDevice, RpcProbe

    backend = make_backend()
    online = RpcProbe(
        "online",
        latency_ms=0.4,
        protocol="3.0.0",
        devices=(RpcDevice(0, 1000, 4000), RpcDevice(1, 10, 20)),
    )
    assert backend_probe(backend, online) == "online"
    assert backend.protocol == "3.0.0"
    assert backend.devices == [
        {"index": 0, "free": 1000, "total": 4000},
        {"index": 1, "free": 10, "total": 20},
    ]
    assert backend_probe(backend, RpcProbe("busy", latency_ms=0.3)) == "busy"
    # A busy server's full queue makes connects time out: still busy, not offline.
    queued = RpcProbe("offline", error="timed out", connect_timed_out=True)
    assert backend_probe(backend, queued, session=False) == "busy"
    refused = RpcProbe("offline", error="connection refused")
    assert backend_probe(backend, refused, session=False) == "offline"
    # Alive again: a TCP connect says so, the next session says what it is.
    assert (
        backend_probe(backend, RpcProbe("online", latency_ms=0.2), session=False)
        == "offline"
    )
    assert backend_probe(backend, online) == "online"
    types = [e.type for e in Event.objects.filter(stream="backends").order_by("id")]
    assert types == [
        "backend_connected",
        "status_change",
        "backend_disconnected",
        "backend_connected",
    ]


def backend_events():
    rows = Event.objects.filter(stream="backends").order_by("id")
    return [(e.type, e.payload.get("new_status")) for e in rows]


@override_settings(SOLLOL_RPC_COORDINATORS=["127.0.0.2:50052=127.0.0.9:8080"])
def test_it_keeps_a_busy_backend_busy_while_its_coordinator_serves_with_it():
    from network.rpc import RpcProbe

    # The llama.cpp server holding it answers and serves a model: proof of life.
    [coordinator] = lifecycle.ensure_nodes(
        ["http://127.0.0.9:8080"], source=Source.CONFIG, now=T0
    )
    OllamaNode.objects.filter(pk=coordinator.pk).update(
        kind="llamacpp",
        status="healthy",
        probe_status="healthy",
        loaded_models=[{"name": "split-model"}],
    )
    backend = make_backend()
    backend_probe(backend, RpcProbe("online", latency_ms=0.4, protocol="7.0.0"))
    # Seen serving another client by a bare connect, then the queue is full.
    busy = RpcProbe("busy", latency_ms=0.3, error="did not take the connection")
    assert backend_probe(backend, busy, session=False) == "busy"
    queued = RpcProbe("offline", error="timed out", connect_timed_out=True)
    for minute in range(1, 60):
        at = T0 + dt.timedelta(minutes=minute)
        assert backend_probe(backend, queued, session=minute % 2 == 0, at=at) == "busy"
    assert "serving another client" in backend.last_error
    # The client lets go: a bare connect sees the server free again.
    free = RpcProbe("online", latency_ms=0.2)
    assert backend_probe(backend, free, session=False) == "online"
    assert backend.protocol == "7.0.0"
    assert backend_events() == [
        ("backend_connected", "online"),
        ("status_change", "busy"),
        ("status_change", "online"),
    ]


@override_settings(SOLLOL_RPC_BUSY_MAX=600)
def test_a_busy_backend_with_no_proof_of_life_becomes_unreachable_until_it_answers(
    client,
):
    from network.rpc import RpcProbe

    backend = make_backend()
    backend_probe(backend, RpcProbe("online", latency_ms=0.4, protocol="7.0.0"))
    backend_probe(backend, RpcProbe("busy", latency_ms=0.3), session=False)
    queued = RpcProbe("offline", error="timed out", connect_timed_out=True)
    for minute in range(1, 10):
        at = T0 + dt.timedelta(minutes=minute)
        assert backend_probe(backend, queued, session=False, at=at) == "busy"
    # Ten minutes of timeouts, and no coordinator says it is in use.
    at = T0 + dt.timedelta(minutes=10)
    assert backend_probe(backend, queued, session=False, at=at) == "unreachable"
    assert "nothing answered for 600 s" in backend.last_error
    assert backend_events()[-1] == ("backend_disconnected", "unreachable")
    listed = client.get("/api/network/backends").json()["backends"][0]
    assert listed["status"] == "unreachable" and listed["usable"] is False
    health = client.get("/api/network/health").json()
    assert "offline or unreachable" in health["reason"]
    # More timeouts change nothing; an answer brings it back.
    at = T0 + dt.timedelta(minutes=11)
    assert backend_probe(backend, queued, session=False, at=at) == "unreachable"
    alive = RpcProbe("online", latency_ms=0.2)
    assert backend_probe(backend, alive, session=False, at=at) == "unreachable"
    online = RpcProbe("online", latency_ms=0.2, protocol="7.0.0")
    assert backend_probe(backend, online, at=at) == "online"
    assert backend_events()[-1] == ("backend_connected", "online")


@override_settings(SOLLOL_PROBE_OFFLINE_AFTER=3)
def test_it_takes_a_backend_that_stops_answering_offline_after_a_few_timeouts():
    from network.rpc import RpcProbe

    backend = make_backend()
    backend_probe(backend, RpcProbe("online", latency_ms=0.4, protocol="7.0.0"))
    silent = RpcProbe("offline", error="timed out", connect_timed_out=True)

    assert backend_probe(backend, silent, session=False) == "online"
    assert backend_probe(backend, silent, session=False) == "online"
    assert backend.last_error == "timed out"
    assert backend_probe(backend, silent, session=False) == "offline"
    assert backend_probe(backend, silent) == "offline"
    assert backend_events() == [
        ("backend_connected", "online"),
        ("backend_disconnected", "offline"),
    ]


def test_it_takes_a_busy_backend_offline_at_once_when_its_port_refuses():
    from network.rpc import RpcProbe

    backend = make_backend()
    backend_probe(backend, RpcProbe("online", latency_ms=0.4, protocol="7.0.0"))
    backend_probe(backend, RpcProbe("busy", latency_ms=0.3), session=False)
    queued = RpcProbe("offline", error="timed out", connect_timed_out=True)
    backend_probe(backend, queued, session=False)

    refused = RpcProbe("offline", error="connection refused")
    assert backend_probe(backend, refused, session=False) == "offline"
    assert backend_events()[-1] == ("backend_disconnected", "offline")


@override_settings(SOLLOL_FLAP_START=100)  # changes every probe, on purpose
def test_it_keeps_only_the_newest_history_of_each_node():
    node, other = (make_node("127.0.0.2"), make_node("127.0.0.3"))
    for i in range(6):
        probe(node, DOWN if i % 2 else OK, T0 + dt.timedelta(seconds=i))
    probe(other, OK)
    assert lifecycle.prune_node_history(keep=2) == 4
    assert [h["new_status"] for h in node_history(node)] == [
        "unhealthy",
        "healthy",
    ]
    assert len(node_history(other)) == 1


def test_its_events_carry_the_verdict_clients_use_not_only_the_status():
    node = make_node()
    assert node_events("node_discovered")[0].payload["usable"] is False
    recording.record_node_probes([(node.id, OK)], now=T0)
    recording.record_node_probes([(node.id, BUSY)], now=T0)  # answers: degraded
    recording.record_node_probes([(node.id, DOWN)], now=T0)
    verdicts = [
        (e.payload["new_status"], e.payload["usable"], e.payload["loaded_models_known"])
        for e in node_events("status_change")
    ]
    assert verdicts == [
        ("healthy", True, True),
        ("degraded", True, True),
        ("unhealthy", False, False),
    ]


def test_a_localhost_guess_that_never_answers_is_not_found_not_down():
    """A first run without Ollama: the guessed localhost entries are "not found",
    the fleet is not critical, the health says how to add nodes (and nothing
    alerts: alerts/tests/test_lifecycle.py)."""
    from network.health import network_health
    from network.models import RpcBackend
    from network.rpc import RpcProbe

    [guess] = lifecycle.ensure_nodes(
        ["http://127.0.0.1:11434"], source=Source.LOCALHOST, now=T0
    )
    lifecycle.ensure_backends(["127.0.0.1:50052"], source=Source.LOCALHOST, now=T0)
    backend = RpcBackend.objects.get(address="127.0.0.1:50052")
    for second in range(5):  # past SOLLOL_PROBE_OFFLINE_AFTER
        at = T0 + dt.timedelta(seconds=second)
        assert probe(guess, DOWN, at=at) == NodeStatus.NOT_FOUND
        refused = RpcProbe("offline", error="connection refused")
        assert backend_probe(backend, refused, at=at) == "not_found"
    health = network_health(now=T0)
    assert health["status"] == "unknown" and health["nodes_not_found"] == 1
    assert "SOLLOL_OLLAMA_NODES" in health["reason"]
    assert "down" not in health["reason"] and "offline" not in health["reason"]
    [found] = node_events("status_change")  # unknown → not_found, and once
    assert found.payload["new_status"] == "not_found"
    assert "SOLLOL_DISCOVER_LOCALHOST" in found.payload["reason"]
    assert "SOLLOL_RPC_BACKENDS" in backend.last_error

    # Ollama started later: healthy; and from then on, failing is being down.
    assert probe(guess, OK, at=T0 + dt.timedelta(seconds=10)) == NodeStatus.HEALTHY
    assert probe(guess, DOWN, at=T0 + dt.timedelta(seconds=11)) == NodeStatus.UNHEALTHY
    assert network_health(now=T0)["status"] == "critical"


def test_a_configured_node_that_never_answers_is_down():
    node = make_node()
    assert probe(node, DOWN) == NodeStatus.UNHEALTHY
    backend = make_backend()
    from network.rpc import RpcProbe

    refused = RpcProbe("offline", error="connection refused")
    assert backend_probe(backend, refused) == "offline"

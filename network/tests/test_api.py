from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import override_settings
from django.utils import timezone

from activity.models import Event
from network.choices import Source
from network.models import OllamaNode, RpcBackend
from network.probes import NodeProbe
from network.services import lifecycle, recording

pytestmark = pytest.mark.django_db


def post(client, path, body, **headers):
    return client.post(
        path, json.dumps(body), content_type="application/json", **headers
    )


def answered(node, *, loaded, disk):
    """Record one successful probe of node."""
    probe = NodeProbe(
        ok=True,
        answered=True,
        latency_ms=5.0,
        version="0.12.3",
        loaded_models=loaded,
        disk_models=disk,
    )
    recording.record_node_probes([(node.id, probe)], now=timezone.now())


def test_it_lists_nodes_with_what_an_operator_needs(client):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.CONFIG, now=timezone.now()
    )
    loaded = [{"name": "llama3.2:3b", "size": 3, "size_vram": 2}]
    answered(node, loaded=loaded, disk=[{"name": "llama3.2:3b"}])
    body = client.get("/api/network/nodes").json()
    assert body["total"] == 1
    [listed] = body["nodes"]
    for field in (
        "id",
        "url",
        "status",
        "latency_ms",
        "version",
        "models",
        "loaded_models",
        "vram_used_bytes",
        "last_seen",
        "source",
        "consecutive_failures",
    ):
        assert field in listed
    assert listed["status"] == "healthy"
    assert listed["vram_used_bytes"] == 2
    detail = client.get(f"/api/network/nodes/{node.id}").json()
    assert detail["history"][0]["new_status"] == "healthy"


def test_a_node_of_another_kind_is_added_through_the_api_by_its_kind(client):
    created = post(client, "/api/network/nodes", {"url": "llamacpp+http://127.0.0.2"})
    assert created.status_code == 201
    assert created.json()["node"]["url"] == "http://127.0.0.2:8080"
    assert created.json()["node"]["kind"] == "llamacpp"
    again = post(client, "/api/network/nodes", {"url": "vllm+http://127.0.0.2:8080"})
    assert again.json()["created"] is False
    assert OllamaNode.objects.get().kind == "vllm"  # the operator says what it is
    refused = post(client, "/api/network/nodes", {"url": "kobold+http://127.0.0.3"})
    assert refused.status_code == 400
    assert "'kobold' is not a kind of node" in refused.json()["error"]


def test_it_adds_and_removes_nodes_through_the_api(client):
    created = post(client, "/api/network/nodes", {"url": "127.0.0.2:11434"})
    assert created.status_code == 201
    node_id = created.json()["node"]["id"]
    again = post(client, "/api/network/nodes", {"url": "http://127.0.0.2:11434"})
    assert again.status_code == 200 and again.json()["created"] is False
    assert OllamaNode.objects.get().source == "api"
    assert client.delete(f"/api/network/nodes/{node_id}").status_code == 200
    assert not OllamaNode.objects.exists()
    assert [e.type for e in Event.objects.filter(stream="nodes")] == [
        "node_discovered",
        "node_removed",
    ]
    assert client.delete(f"/api/network/nodes/{node_id}").status_code == 404


def test_the_same_host_and_port_is_one_node_whatever_the_scheme(client):
    created = post(client, "/api/network/nodes", {"url": "http://127.0.0.2:11434"})
    again = post(client, "/api/network/nodes", {"url": "https://127.0.0.2:11434"})
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["node"]["id"] == created.json()["node"]["id"]
    lifecycle.ensure_reported(
        {"nodes": ["https://127.0.0.2:11434", "127.0.0.3", "https://127.0.0.3"]},
        now=timezone.now(),
    )
    assert sorted(OllamaNode.objects.values_list("url", flat=True)) == [
        "http://127.0.0.2:11434",
        "http://127.0.0.3:11434",
    ]


def test_an_ipv6_node_is_named_as_activity_names_it(client):
    node, _ = lifecycle.add_node("http://[::1]:11434", now=timezone.now())
    assert node.address == "[::1]:11434"
    [listed] = client.get("/api/network/nodes").json()["nodes"]
    assert listed["address"] == "[::1]:11434"


def test_a_removed_node_stays_removed_when_an_app_reports_it_again(client):
    now = timezone.now()
    url = "http://127.0.0.2:11434"
    [reported] = lifecycle.ensure_nodes([url], source=Source.APPLICATION, now=now)
    assert client.delete(f"/api/network/nodes/{reported.id}").status_code == 200
    # The app's next heartbeat reports it again, and so does the opt-in scan.
    lifecycle.ensure_reported({"nodes": [url], "rpc_backends": []}, now=now)
    lifecycle.ensure_nodes([url], source=Source.SCAN, now=now)
    assert not OllamaNode.objects.exists()
    # The operator adding it through the API brings it back, watched again by all.
    assert post(client, "/api/network/nodes", {"url": url}).status_code == 201
    assert OllamaNode.objects.get().source == "api"
    assert [e.type for e in Event.objects.filter(stream="nodes")] == [
        "node_discovered",
        "node_removed",
        "node_discovered",
    ]


def test_a_removed_backend_stays_removed_too(client):
    now = timezone.now()
    [backend] = lifecycle.ensure_backends(
        ["127.0.0.2:50052"], source=Source.APPLICATION, now=now
    )
    assert client.delete(f"/api/network/backends/{backend.id}").status_code == 200
    lifecycle.ensure_reported({"rpc_backends": ["127.0.0.2:50052"]}, now=now)
    assert not RpcBackend.objects.exists()


@override_settings(
    SOLLOL_OLLAMA_NODES=["127.0.0.3"],
    SOLLOL_RPC_BACKENDS=["127.0.0.3:50052"],
    SOLLOL_DISCOVER_LOCALHOST=True,
)
def test_what_the_configuration_adds_is_removed_there_not_here(client):
    lifecycle.sync_configured(now=timezone.now())
    for node in OllamaNode.objects.all():
        response = client.delete(f"/api/network/nodes/{node.id}")
        assert response.status_code == 409, response.content
        setting = "SOLLOL_OLLAMA_NODES" if node.source == "config" else "LOCALHOST"
        assert setting in response.json()["error"]
    for backend in RpcBackend.objects.all():
        response = client.delete(f"/api/network/backends/{backend.id}")
        assert response.status_code == 409
    assert OllamaNode.objects.count() == RpcBackend.objects.count() == 2
    assert not Event.objects.filter(type="node_removed").exists()


@override_settings(SOLLOL_OLLAMA_NODES=[], SOLLOL_DISCOVER_LOCALHOST=False)
def test_a_node_no_longer_configured_can_be_removed(client):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.3"], source=Source.CONFIG, now=timezone.now()
    )
    assert client.delete(f"/api/network/nodes/{node.id}").status_code == 200


@pytest.mark.parametrize(
    "body", [{}, {"url": 5}, {"url": "http://x/y"}, [1], {"url": ""}]
)
def test_it_refuses_a_malformed_node_with_a_json_400(client, body):
    response = post(client, "/api/network/nodes", body)
    assert response.status_code == 400 and response.json()["error"]


def test_it_adds_and_removes_backends_through_the_api(client):
    created = post(client, "/api/network/backends", {"address": "127.0.0.2"})
    assert created.status_code == 201
    assert created.json()["backend"]["address"] == "127.0.0.2:50052"
    listed = client.get("/api/network/backends").json()
    assert listed["total"] == 1 and listed["backends"][0]["status"] == "unknown"
    backend_id = listed["backends"][0]["id"]
    assert client.delete(f"/api/network/backends/{backend_id}").status_code == 200
    assert not RpcBackend.objects.exists()


@override_settings(SOLLOL_API_TOKENS=["t"])
def test_it_protects_fleet_changes_with_the_token(client):
    assert post(client, "/api/network/nodes", {"url": "127.0.0.2"}).status_code == 401
    ok = post(
        client,
        "/api/network/nodes",
        {"url": "127.0.0.2"},
        HTTP_AUTHORIZATION="Bearer t",
    )
    assert ok.status_code == 201
    assert (
        client.delete(f"/api/network/nodes/{ok.json()['node']['id']}").status_code
        == 401
    )
    assert client.get("/api/network/nodes").status_code == 200


def test_it_reports_health_with_reasons(client):
    now = timezone.now()
    assert client.get("/api/network/health").json()["status"] == "unknown"
    a, b = lifecycle.ensure_nodes(["127.0.0.2", "127.0.0.3"], source="config", now=now)
    up = NodeProbe(
        ok=True, answered=True, latency_ms=5.0, version="1", loaded_models=[]
    )
    down = NodeProbe(ok=False, answered=False, error="refused")
    recording.record_node_probes([(a.id, up), (b.id, up)], now=now)
    health = client.get("/api/network/health").json()
    assert health["status"] == "healthy" and health["reason"] == ""
    assert (health["nodes_total"], health["nodes_healthy"]) == (2, 2)
    recording.record_node_probes([(b.id, down)], now=now + dt.timedelta(seconds=1))
    health = client.get("/api/network/health").json()
    assert health["status"] == "degraded"
    assert health["reason"] == "1 of 2 nodes are down"
    recording.record_node_probes([(a.id, down)], now=now + dt.timedelta(seconds=2))
    health = client.get("/api/network/health").json()
    assert health["status"] == "critical"
    assert health["reason"].startswith("no node is usable")
    for field in (
        "timestamp",
        "backends_total",
        "backends_online",
        "applications_active",
    ):
        assert field in health


def test_a_fleet_of_backends_only_is_critical_when_none_answers(client):
    lifecycle.ensure_backends(
        ["127.0.0.2:50052", "127.0.0.3:50052"], source="config", now=timezone.now()
    )
    assert client.get("/api/network/health").json()["status"] == "unknown"
    RpcBackend.objects.update(status="busy")
    assert client.get("/api/network/health").json()["status"] == "healthy"
    RpcBackend.objects.update(status="offline")
    health = client.get("/api/network/health").json()
    assert health["status"] == "critical", health
    assert health["reason"].startswith("no RPC backend is usable")


def test_the_list_shows_each_node_as_its_detail_does(client):
    """The list copies the stored models JSON: it must say what the detail says."""
    odd = 'llama3.2:3b "quoted" \\ \u2028 ünï <b>'
    node, _ = lifecycle.add_node("127.0.0.2:11434", now=timezone.now())
    lifecycle.add_node("127.0.0.3:11434", now=timezone.now())  # never probed
    answered(
        node,
        loaded=[{"name": odd, "size": 3, "size_vram": 2}],
        disk=[{"name": odd, "size": 3, "details": {"q": "Q4"}}],
    )
    body = client.get("/api/network/nodes").json()
    assert body["total"] == 2
    for listed in body["nodes"]:
        detail = client.get(f"/api/network/nodes/{listed['id']}").json()
        del detail["history"], detail["rpc_backends"]  # the detail's alone
        assert listed == detail
    assert body["nodes"][0]["models"][0]["name"] == odd


def test_a_node_added_with_a_token_shows_which_credential_never_the_secret(client):
    added = post(client, "/api/network/nodes", {"url": "127.0.0.2;token=t0ps3cret"})
    assert added.status_code == 201
    assert added.json()["node"]["credential"] == "bearer ***"
    node = OllamaNode.objects.get()
    assert node.url == "http://127.0.0.2:11434"
    assert node.credential == {"scheme": "bearer", "user": "", "secret": "t0ps3cret"}
    # Adding it again without one keeps it; with user:password@ replaces it.
    again = post(client, "/api/network/nodes", {"url": "http://127.0.0.2:11434"})
    assert (
        again.status_code == 200 and again.json()["node"]["credential"] == "bearer ***"
    )
    post(client, "/api/network/nodes", {"url": "http://me:pw%3A1@127.0.0.2:11434"})
    node.refresh_from_db()
    assert node.credential == {"scheme": "basic", "user": "me", "secret": "pw:1"}
    shown = [
        client.get("/api/network/nodes").content,
        client.get(f"/api/network/nodes/{node.id}").content,
        json.dumps([e.as_message() for e in Event.objects.all()]).encode(),
    ]
    assert not any(b"t0ps3cret" in text or b"pw" in text for text in shown)
    refused = post(client, "/api/network/nodes", {"url": "http://me:pw@127.0.0.2/x"})
    assert refused.status_code == 400 and "pw" not in refused.json()["error"]
    assert "***@" in refused.json()["error"]


@override_settings(SOLLOL_OLLAMA_NODES=["127.0.0.2;token=from-config"])
def test_a_configured_nodes_credentials_are_changed_in_the_configuration(client):
    lifecycle.sync_configured(now=timezone.now())
    refused = post(client, "/api/network/nodes", {"url": "127.0.0.2;token=other"})
    assert refused.status_code == 409
    assert "SOLLOL_OLLAMA_NODES" in refused.json()["error"]
    assert "other" not in refused.json()["error"]
    # Adding it again without credentials is no change: 200, token kept.
    again = post(client, "/api/network/nodes", {"url": "127.0.0.2"})
    assert again.status_code == 200
    assert (
        OllamaNode.objects.get(host="127.0.0.2").credential["secret"] == "from-config"
    )

"""The network API answers exactly what its OpenAPI schema describes (strictly:
no undescribed field, no missing one, no other type)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from network.choices import Source
from network.models import OllamaNode, RpcBackend
from network.services import lifecycle
from network.tests.test_api import answered, post
from tests.openapi import assert_described

pytestmark = pytest.mark.django_db


def test_nodes_backends_and_availability_answer_as_described(client):
    now = timezone.now()
    quiet, busy = lifecycle.ensure_nodes(
        ["127.0.0.2", "127.0.0.3"], source=Source.CONFIG, now=now
    )
    answered(
        busy,
        loaded=[{"name": "llama3.2:3b", "size": 3, "size_vram": 2}],
        disk=[{"name": "llama3.2:3b"}],
    )
    OllamaNode.objects.filter(pk=busy.pk).update(
        kind="llamacpp",
        serving={"slots_total": 4, "slots_busy": 1},
        gpus=[{"index": 0, "name": "GPU", "memory_used_bytes": 1}],
    )
    added = post(client, "/api/network/nodes", {"url": "http://127.0.0.4:11434"})
    assert added.status_code == 201
    assert_described("/api/network/nodes", "POST", added.json(), 201)
    backend, _ = lifecycle.add_backend("127.0.0.5:50052", now=now)
    RpcBackend.objects.filter(pk=backend.pk).update(
        protocol="3.0.0", devices=[{"name": "CPU", "free": 1, "total": 2}]
    )

    for path in (
        "/api/network/nodes",
        "/api/network/nodes?limit=1&offset=1",
        f"/api/network/nodes/{busy.id}",
        f"/api/network/nodes/{quiet.id}",
        "/api/network/backends",
        f"/api/network/backends/{backend.id}",
        "/api/network/availability?window=1h",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert_described(path, "GET", answer.json())

    made = post(client, "/api/network/backends", {"address": "127.0.0.6:50052"})
    assert_described("/api/network/backends", "POST", made.json(), 201)
    removed = client.delete(f"/api/network/backends/{backend.id}")
    assert_described(f"/api/network/backends/{backend.id}", "DELETE", removed.json())


def test_a_changed_answer_fails_the_check(client):
    """The check itself: a field the schema does not describe, or a wrong type."""
    lifecycle.ensure_nodes(["127.0.0.2"], source=Source.CONFIG, now=timezone.now())
    body = client.get("/api/network/nodes").json()
    body["nodes"][0]["surprise"] = 1
    with pytest.raises(AssertionError, match="surprise"):
        assert_described("/api/network/nodes", "GET", body)
    body = client.get("/api/network/nodes").json()
    body["total"] = "one"
    with pytest.raises(AssertionError, match="total"):
        assert_described("/api/network/nodes", "GET", body)

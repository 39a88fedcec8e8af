"""A node whose /api/ps fails while /api/version answers is still there, but what
it holds in memory is no longer known: the API, its events, its samples, the
gateway's routing and Prometheus stop claiming its last loaded models."""

from __future__ import annotations

import pytest
from django.utils import timezone

from activity.models import Event
from network.choices import Source
from network.gateway.fleet import read_nodes
from network.probes import NodeProbe
from network.services import lifecycle, recording

pytestmark = pytest.mark.django_db

LOADED = [{"name": "llama3.2:3b", "size": 3, "size_vram": 2}]


def probe(node, **found) -> None:
    recording.record_node_probes([(node.id, NodeProbe(**found))], now=timezone.now())


def listed(client) -> dict:
    [node] = client.get("/api/network/nodes").json()["nodes"]
    return node


def test_loaded_models_are_unknown_while_ps_fails_and_known_again_after(client):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.CONFIG, now=timezone.now()
    )
    good = {"ok": True, "answered": True, "latency_ms": 4.0, "version": "0.12.3"}
    probe(node, **good, loaded_models=LOADED, disk_models=[{"name": "llama3.2:3b"}])
    assert listed(client)["loaded_models_known"] is True
    [view] = read_nodes()
    assert view.loaded == {"llama3.2:3b"}

    probe(
        node,
        ok=False,
        answered=True,
        latency_ms=4.0,
        version="0.12.3",
        error="/api/ps answered HTTP 500",
        models_failed=True,
    )
    shown = listed(client)
    assert shown["usable"] is True  # it answers: not down
    assert shown["loaded_models_known"] is False
    assert shown["loaded_models"] == LOADED  # what it held, said to be unknown
    [view] = read_nodes()
    assert view.loaded == frozenset()  # routing no longer prefers it for the model
    scrape = client.get("/api/prometheus").content.decode()
    assert 'sollol_node_up{node="127.0.0.2:11434"} 1' in scrape
    assert "sollol_node_loaded_models{" not in scrape
    last = Event.objects.filter(stream="nodes").order_by("-id").first()
    assert last.payload["loaded_models_known"] is False

    probe(node, **good, loaded_models=[])
    shown = listed(client)
    assert shown["loaded_models_known"] is True and shown["loaded_models"] == []

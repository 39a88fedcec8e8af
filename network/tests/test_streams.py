"""The network streams through the real ASGI app."""

from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from network.probes import NodeProbe
from network.services import lifecycle, recording
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def probed(loaded):
    return NodeProbe(
        ok=True, answered=True, latency_ms=3.0, version="0.12.3", loaded_models=loaded
    )


@database_sync_to_async
def node_life():
    now = timezone.now()
    [node] = lifecycle.ensure_nodes(["127.0.0.2"], source="config", now=now)
    recording.record_node_probes([(node.id, probed([]))], now=now)
    model = {"name": "qwen2.5:7b", "size": 5_000_000_000, "size_vram": 4_500_000_000}
    later = now + dt.timedelta(seconds=1)
    recording.record_node_probes([(node.id, probed([model]))], now=later)


@pytest.mark.parametrize(
    ("path", "types"),
    [
        ("/ws/network/nodes", ["node_discovered", "status_change"]),
        ("/ws/ollama_activity", ["model_loaded"]),
        ("/ws/network/ollama_activity", ["model_loaded"]),
    ],
)
async def test_it_streams_each_kind_of_event_on_its_own_path(path, types):
    ws = WebsocketCommunicator(application, path)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    await node_life()
    received = [await ws.receive_json_from(timeout=5) for _ in types]
    assert [event["type"] for event in received] == types
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()

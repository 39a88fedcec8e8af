"""Samples: measurements that are no events, pushed to viewers that ask for them."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from network.cycle import run_cycle
from network.services import lifecycle
from simulator.ollama import running_fleet
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = [(b"origin", b"http://127.0.0.1:8080")]


async def viewer(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
    assert (await communicator.connect(timeout=5))[0]
    return communicator


async def test_each_probe_cycle_sends_the_nodes_latencies_to_who_asked():
    with running_fleet(2, base="127.0.0.2", port=0, seed=4) as fleet:
        await database_sync_to_async(watch)(fleet.urls)
        asked = await viewer("/ws/network/nodes?samples=1")
        plain = await viewer("/ws/network/nodes")
        await database_sync_to_async(run_cycle)(now=timezone.now())
        received = [await asked.receive_json_from(timeout=5) for _ in range(3)]
        samples = [m for m in received if m["type"] == "samples"]
        assert len(samples) == 1 and "id" not in samples[0]
        rows = {row[0]: row for row in samples[0]["nodes"]}
        assert len(rows) == 2
        assert all(row[1] == "healthy" and row[2] > 0 for row in rows.values())
        assert samples[0]["fields"] == [
            "id",
            "status",
            "latency_ms",
            "last_seen",
            "usable",
            "serving",
            "gpus",
            "loaded_models_known",
        ]
        assert all(row[5] is None for row in rows.values())  # Ollama's: none
        assert all(row[7] is True for row in rows.values())  # /api/ps was read
        # The event stream's contract stays: without ?samples=1, events only.
        events = [await plain.receive_json_from(timeout=5) for _ in range(2)]
        assert all(m["type"] == "status_change" and "id" in m for m in events)
        assert await plain.receive_nothing(timeout=0.3)
        await asked.disconnect()
        await plain.disconnect()


def watch(urls: list[str]) -> None:
    lifecycle.ensure_nodes(urls, source="config", now=timezone.now())

"""The dashboard watching a simulated fleet: deaths reach the streams within seconds."""

from __future__ import annotations

import json
import time

import pytest
import requests
from websockets.sync.client import connect

from simulator.ollama import running_fleet
from simulator.rpc import running_rpc_server
from tests.liveserver import wait_for

pytestmark = pytest.mark.live

FAST_PROBING = {
    "SOLLOL_PROBE_INTERVAL": "1",
    "SOLLOL_PROBE_TIMEOUT": "1",
    "SOLLOL_DISCOVER_LOCALHOST": "false",
}


def events_until(ws, wanted, timeout):
    """Return the first event for which wanted(event) holds, within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if wanted(event):
            return event


def test_it_reports_a_dead_node_within_an_interval_and_a_timeout(live_server_factory):
    with running_fleet(2, base="127.0.0.2", port=0, seed=1) as fleet:
        server = live_server_factory(
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls), **FAST_PROBING
        )
        server.start()

        def healthy():
            nodes = requests.get(f"{server.url}/api/network/nodes", timeout=5).json()
            return {n["status"] for n in nodes["nodes"]} == {"healthy"} and nodes

        nodes = wait_for(healthy)
        assert nodes["total"] == 2
        victim = fleet.nodes[0]
        with connect(f"ws://127.0.0.1:{server.port}/ws/network/nodes") as ws:
            killed = time.monotonic()
            victim.die()
            event = events_until(ws, lambda e: e["type"] == "status_change", timeout=10)
            noticed = time.monotonic() - killed
        assert event["node"] == victim.url
        assert (event["old_status"], event["new_status"]) == ("healthy", "unhealthy")
        assert event["message"] == f"Node {victim.url}: healthy → unhealthy"
        # interval + timeout + 0.5 s (a refused connection needs no timeout at all)
        assert noticed <= 3.5, noticed
        health = requests.get(f"{server.url}/api/network/health", timeout=5).json()
        assert health["status"] == "degraded"
        assert health["reason"] == "1 of 2 nodes are down"


def test_it_reports_a_dead_rpc_backend_within_an_interval_and_a_timeout(
    live_server_factory,
):
    with running_rpc_server("127.0.0.3", 0, protocol="7.0.0") as backend:
        address = f"127.0.0.3:{backend.port}"
        server = live_server_factory(SOLLOL_RPC_BACKENDS=address, **FAST_PROBING)
        server.start()

        def online():
            listed = requests.get(f"{server.url}/api/network/backends", timeout=5)
            [entry] = listed.json()["backends"]
            return entry["status"] == "online" and entry

        entry = wait_for(online)
        assert entry["protocol"] == "7.0.0"
        with connect(f"ws://127.0.0.1:{server.port}/ws/network/backends") as ws:
            killed = time.monotonic()
            backend.die()
            event = events_until(
                ws, lambda e: e["type"] == "backend_disconnected", timeout=10
            )
            noticed = time.monotonic() - killed
        assert event["backend"] == address
        assert noticed <= 3.5, noticed


def test_it_adds_a_node_through_the_api_and_streams_its_discovery(
    live_server_factory,
):
    with running_fleet(1, base="127.0.0.4", port=0) as fleet:
        server = live_server_factory(**FAST_PROBING)
        server.start()
        with connect(f"ws://127.0.0.1:{server.port}/ws/network/nodes") as ws:
            added = requests.post(
                f"{server.url}/api/network/nodes",
                json={"url": fleet.urls[0]},
                timeout=5,
            )
            assert added.status_code == 201
            discovered = events_until(
                ws, lambda e: e["type"] == "node_discovered", timeout=5
            )
            assert discovered["node"] == fleet.urls[0]
            assert discovered["source"] == "api"
            up = events_until(ws, lambda e: e["type"] == "status_change", timeout=5)
            assert up["new_status"] == "healthy"

"""The page shows what the gateway is doing to each node, as it happens."""

from __future__ import annotations

import threading

import pytest
import requests
from playwright.sync_api import expect

from simulator.ollama import running_fleet
from tests.browser.test_dashboard_page import (
    FAST_PROBING,
    all_healthy,
    node_row,
    open_live,
)
from tests.liveserver import wait_for

pytestmark = pytest.mark.live


def test_requests_in_flight_and_waiting_show_on_the_nodes_row(
    live_server_factory, watched_page
):
    with running_fleet(1, base="127.0.0.95", port=0, seed=4) as fleet:
        node = fleet.nodes[0]
        node.pull("llama3.2:3b")
        server = live_server_factory(
            SOLLOL_OLLAMA_NODES=node.url,
            SOLLOL_GATEWAY_NODE_CONCURRENCY="1",
            **FAST_PROBING,
        )
        server.start()
        wait_for(lambda: all_healthy(server, 1))
        page = open_live(watched_page(), server)
        load = node_row(page, node.url).locator("td").nth(3)
        expect(load).to_have_text("idle")
        node.set_delay(1.5)  # each request holds the node's one slot 1.5 s
        body = {"model": "llama3.2:3b", "prompt": "x", "stream": False}
        replies: list[int] = []

        def ask():
            reply = requests.post(f"{server.url}/ollama/api/generate", json=body)
            replies.append(reply.status_code)

        askers = [threading.Thread(target=ask) for _ in range(3)]
        for asker in askers:
            asker.start()
        expect(load).to_have_text("1 in flight · 2 waiting", timeout=3000)
        for asker in askers:
            asker.join(15)
        assert replies == [200, 200, 200]
        expect(load).to_have_text("idle", timeout=3000)

"""History on the page: kept series drawn at once, after a reload too, and the
range control moves the fleet charts, the request window and a node's chart."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from simulator.ollama import running_fleet
from tests.browser.test_dashboard_page import FAST_PROBING, all_healthy, open_live
from tests.liveserver import wait_for

pytestmark = pytest.mark.live

FROZEN_STREAMS = "window.WebSocket = function () { throw new Error('no sockets'); };"


def test_kept_history_is_drawn_at_first_paint_and_follows_the_range(
    live_server_factory, watched_page
):
    with running_fleet(2, base="127.0.0.2", port=0, seed=41) as fleet:
        victim, survivor = fleet.nodes
        server = live_server_factory(
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls),
            SOLLOL_HISTORY_INTERVAL="1",
            **FAST_PROBING,
        )
        server.start()
        wait_for(lambda: all_healthy(server, 2))
        victim.die()
        fleet_history = f"{server.url}/api/network/history?window=1h"
        wait_for(
            lambda: (
                not all_healthy(server, 2)
                and requests.get(fleet_history, timeout=5).json()["measurements"] >= 4
            )
        )

        # No stream at all: what shows comes from the kept series, read at load.
        watch = watched_page()
        watch.page.add_init_script(FROZEN_STREAMS)
        watch.page.goto(server.url + "/")
        row = watch.page.locator("#nodes-body tr").filter(has_text=survivor.address)
        expect(row.locator("svg.spark polyline")).to_have_attribute(
            "points", re.compile(r"\d.* \d"), timeout=5000
        )
        usable = watch.page.locator("#history-nodes g.line-usable path")
        expect(usable).to_have_attribute("d", re.compile(r"^M\d"))
        expect(watch.page.locator("#history-note")).to_contain_text(
            "Fleet able to serve"
        )
        least = watch.page.locator("#availability-table tbody tr").first
        expect(least.locator("td").first).to_have_text(victim.url)
        assert float(least.locator("td").nth(1).inner_text().rstrip("%")) < 100

        page = open_live(watched_page(), server)
        page.select_option("#history-range", "24h")
        expect(page.locator("#metrics-window")).to_have_value("24h")
        expect(page.locator("#history-nodes")).to_have_attribute(
            "aria-label", "Usable and known nodes over the last 24h"
        )
        page.locator("#nodes-body tr").filter(has_text=victim.address).click()
        drawer = page.locator("#drawer")
        expect(drawer).to_contain_text("Latency and availability, last 24h")
        expect(drawer).to_contain_text("probes (minute points)")
        expect(drawer.locator(".chart g.line-latency path")).to_have_attribute(
            "d", re.compile(r"^M")
        )
        assert watch.errors == []

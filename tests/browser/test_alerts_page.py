"""The page's header counts firing alerts and its panel lists them, live."""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
import requests
from playwright.sync_api import expect

from simulator.ollama import running_fleet
from tests.browser.test_dashboard_page import (
    FAST_PROBING,
    HOSTILE,
    all_healthy,
    open_live,
)
from tests.liveserver import wait_for

pytestmark = pytest.mark.live


@contextmanager
def two_nodes_watched(live_server_factory, seed: int):
    """A dashboard watching two simulated nodes, both healthy; yield it and the
    node a test may kill (alerts fire after 1 s, evaluated every 0.5 s)."""
    with running_fleet(2, base="127.0.0.2", port=0, seed=seed) as fleet:
        server = live_server_factory(
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls),
            SOLLOL_ALERT_FOR="1",
            SOLLOL_ALERT_EVALUATE_INTERVAL="0.5",
            SOLLOL_NODE_LABELS=f"{fleet.nodes[0].address}=rack=a1",
            **FAST_PROBING,
        )
        server.start()
        wait_for(lambda: all_healthy(server, 2))
        yield server, fleet.nodes[0]


def test_a_dead_node_shows_in_the_header_and_the_alerts_panel_then_goes(
    live_server_factory, watched_page
):
    with two_nodes_watched(live_server_factory, seed=31) as (server, victim):
        watch = watched_page()
        page = open_live(watch, server)
        count = page.locator("#alerts-count")
        expect(count).to_have_text("0 firing")
        expect(page.locator("#alerts-body")).to_contain_text("every rule is quiet")

        victim.die()
        expect(count).to_have_text("1 firing", timeout=8000)
        row = page.locator("#alerts-body tr").filter(has_text=victim.address)
        expect(row.locator("td").nth(1)).to_have_text("node_down")
        expect(row.locator("td").nth(3)).to_have_text("firing")

        # What a person typed is shown as text, never as markup.
        [alert] = requests.get(f"{server.url}/api/alerts", timeout=5).json()["alerts"]
        requests.post(
            f"{server.url}/api/alerts/{alert['id']}/ack",
            json={"by": HOSTILE},
            timeout=5,
        ).raise_for_status()
        expect(row.locator("td").nth(6)).to_have_text(
            f"acknowledged by {HOSTILE}", timeout=8000
        )
        assert page.locator("#alerts-body img").count() == 0

        victim.revive()
        expect(count).to_have_text("0 firing", timeout=8000)
        expect(page.locator("#alerts-body")).to_contain_text("every rule is quiet")
        assert watch.dialogs == [] and watch.errors == []


def test_an_operator_silences_acknowledges_and_ends_a_silence_from_the_page(
    live_server_factory, watched_page
):
    with two_nodes_watched(live_server_factory, seed=37) as (server, victim):
        watch = watched_page()
        page = open_live(watch, server)
        victim.die()
        row = page.locator("#alerts-body tr").filter(has_text=victim.address)
        expect(row.locator("td").nth(3)).to_have_text("firing", timeout=8000)
        note = row.locator("td").nth(6)

        # Silence it from its row: rule and subject come filled in; who and why
        # are typed (and shown as text).
        row.get_by_role("button", name="Silence…").click()
        form = page.locator("#silence-form")
        expect(form).to_be_visible()
        expect(form.locator("input[name=rule]")).to_have_value("node_down")
        expect(form.locator("input[name=subject]")).to_have_value(victim.address)
        form.locator("input[name=labels]").fill("rack=a*")
        form.locator("input[name=created_by]").fill("ops")
        form.locator("input[name=comment]").fill(HOSTILE)
        form.get_by_role("button", name="Silence", exact=True).click()
        expect(form).to_be_hidden()
        expect(note).to_have_text("silenced", timeout=5000)
        silences = page.locator("#silences-list li")
        expect(silences).to_have_count(1)
        expect(silences.first).to_contain_text(f"by ops: {HOSTILE}")
        expect(silences.first).to_contain_text("rack=a*")
        # The alert's subject tells its labels (the node's, from the settings).
        expect(row.locator("td").first).to_have_attribute(
            "title", re.compile("labels: rack=a1")
        )
        [silence] = requests.get(f"{server.url}/api/alerts/silences", timeout=5).json()[
            "silences"
        ]
        assert (silence["rule"], silence["subject"]) == ("node_down", victim.address)
        assert silence["labels"] == {"rack": "a*"}

        # Acknowledged by the name typed before: the button goes, the note says who.
        row.get_by_role("button", name="Acknowledge").click()
        expect(note).to_have_text("silenced · acknowledged by ops", timeout=5000)
        expect(row.get_by_role("button", name="Acknowledge")).to_be_hidden()

        # The silence ended from the page: the alert is no longer marked.
        silences.first.get_by_role("button", name="End").click()
        expect(page.locator("#silences")).to_be_hidden(timeout=5000)
        expect(note).to_have_text("acknowledged by ops", timeout=5000)
        assert page.locator("#alerts img, #silences img").count() == 0
        assert watch.dialogs == [] and watch.errors == []

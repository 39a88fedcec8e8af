"""Long tables in a real Chromium: one page of rows at a time, every row reachable.

A fleet of 1,000 nodes and 10,000 apps is measured in bench/page.py --fleet; here
the same code with a few pages' worth: the page renders one page of rows, reads
the apps the snapshot did not carry, and filters, sorts and turns pages over all.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from sollol_site.views import PAGE_ROWS, SNAPSHOT_APPLICATIONS
from tests.browser.test_dashboard_page import open_live

pytestmark = pytest.mark.live

APPS = 2 * PAGE_ROWS["applications"] + 50  # three pages, two beyond the snapshot
NODES = PAGE_ROWS["nodes"] + 10  # two pages


def register_many(server, count: int) -> None:
    with requests.Session() as session:
        for i in range(count):
            answer = session.post(
                f"{server.url}/api/applications/register",
                json={
                    "app_id": f"many-{i:04d}",
                    "name": f"Agent {i:04d}",
                    "router_type": ("HybridRouter", "RayRouter")[i % 2],
                    "version": f"2.{i % 5}.0",
                },
                timeout=5,
            )
            assert answer.status_code == 200, answer.text


@pytest.fixture
def crowded(live_server_factory):
    # Nodes nobody listens on (connections refused at once on loopback): the
    # table pages them whatever their status.
    nodes = ",".join(f"http://127.0.9.{i + 1}:9" for i in range(NODES))
    server = live_server_factory(
        SOLLOL_OLLAMA_NODES=nodes,
        SOLLOL_DISCOVER_LOCALHOST="false",
        SOLLOL_PROBE_INTERVAL="5",
        SOLLOL_PROBE_TIMEOUT="1",
    )
    server.start()
    register_many(server, APPS)
    return server


def test_long_tables_show_a_page_of_rows_and_reach_every_row(crowded, watched_page):
    assert APPS > SNAPSHOT_APPLICATIONS
    watch = watched_page()
    page = open_live(watch, crowded)
    apps = page.locator("#apps-body tr")
    summary = page.locator("#apps-summary")
    expect(summary).to_have_text(f"{APPS} registered", timeout=10_000)
    page.locator("#apps-table").scroll_into_view_if_needed()

    # One page of rows in the DOM, the pager says where the reader is.
    expect(apps).to_have_count(PAGE_ROWS["applications"])
    pager = page.locator("#apps-pager")
    expect(pager).to_contain_text(f"1–{PAGE_ROWS['applications']} of {APPS}")
    expect(apps.first).to_contain_text("Agent 0000")
    pager.get_by_role("button", name="Next ›").click()
    expect(apps.first).to_contain_text(f"Agent {PAGE_ROWS['applications']:04d}")
    pager.get_by_role("button", name="Next ›").click()
    expect(apps).to_have_count(APPS - 2 * PAGE_ROWS["applications"])
    expect(pager.get_by_role("button", name="Next ›")).to_be_disabled()

    # Filtering sees the apps the page read after first paint, not only its snapshot.
    page.fill("#apps-filter", f"agent {APPS - 1:04d}")
    expect(apps).to_have_count(1)
    expect(apps.first).to_contain_text(f"Agent {APPS - 1:04d}")
    expect(summary).to_have_text(f"1 shown of {APPS} registered")
    expect(pager).to_be_hidden()
    page.fill("#apps-filter", "RayRouter")
    expect(summary).to_have_text(f"{APPS // 2} shown of {APPS} registered")
    page.fill("#apps-filter", "")

    # Sorting orders every app, not one page: descending by name starts at the last.
    page.locator("#apps-table th button[data-sort=name]").click()
    expect(apps.first).to_contain_text(f"Agent {APPS - 1:04d}")
    expect(pager).to_contain_text(f"of {APPS}")

    # A feed link to an app on another page turns to that page and shows its row.
    page.locator("#apps-table th button[data-sort=name]").click()  # ascending again
    requests.post(
        f"{crowded.url}/api/applications/register",
        json={"app_id": "zz-late", "name": "Zz late agent", "router_type": "X"},
        timeout=5,
    ).raise_for_status()
    expect(summary).to_have_text(f"{APPS + 1} registered", timeout=5000)
    link = page.locator("#feed li[data-kind=applications] a", has_text="Zz late agent")
    link.first.click()
    row = page.locator('#apps-body tr[data-key="zz-late"]')
    expect(row).to_be_visible()
    expect(pager).to_contain_text(re.compile(rf"–{APPS + 1} of {APPS + 1}"))

    # Nodes page too: the first page, then the rest.
    nodes = page.locator("#nodes-body tr")
    page.locator("#nodes-table").scroll_into_view_if_needed()
    expect(nodes).to_have_count(PAGE_ROWS["nodes"])
    expect(page.locator("#nodes-summary")).to_have_text(f"{NODES} known")
    page.locator("#nodes-pager").get_by_role("button", name="Next ›").click()
    expect(nodes).to_have_count(NODES - PAGE_ROWS["nodes"])
    assert watch.errors == []

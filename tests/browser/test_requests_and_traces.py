"""The request metrics chart and the trace list in a real Chromium: drawn with the
page, kept current by pushed samples, never by a request on a timer."""

from __future__ import annotations

import re
import time

import pytest
import requests
from playwright.sync_api import expect

from simulator.ollama import running_fleet
from tests.browser.test_dashboard_page import (
    FAST_PROBING,
    HOSTILE,
    all_healthy,
    node_row,
    open_frozen,
    open_live,
)
from tests.liveserver import wait_for

pytestmark = pytest.mark.live

TRACE = "c0ffee" + "00" * 13
ROOT, FAILED = "0a" * 8, "0b" * 8


@pytest.fixture
def dashboard(live_server_factory):
    server = live_server_factory(
        SOLLOL_DISCOVER_LOCALHOST="false",
        # The metrics clock every second, so a minute's window moves on quickly.
        SOLLOL_APP_SAMPLE_INTERVAL="1",
    )
    server.start()
    return server


def report(server, *requests_: dict) -> None:
    answer = requests.post(
        f"{server.url}/api/activity",
        json={"app_id": "chart-app", "requests": list(requests_)},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text


def request_at(seconds_ago: float, latency_ms: float, **fields) -> dict:
    return {
        "node": "127.0.0.2:11434",
        "model": "llama3.2:3b",
        "latency_ms": latency_ms,
        "timestamp": time.time() - seconds_ago,
        **fields,
    }


def test_the_chart_has_points_at_first_paint(dashboard, watched_page):
    # Reported before the page loads, in three different 10 s buckets.
    report(
        dashboard,
        request_at(200, 120.0),
        request_at(200, 480.0, ok=False),
        request_at(100, 90.0),
        request_at(5, 300.0),
    )
    watch = watched_page()
    page = open_frozen(watch, dashboard)

    chart = page.locator("#metrics-chart svg")
    for key in ("p50", "p95", "p99"):
        points = chart.locator(f'g[data-series="{key}"] .marker')
        expect(points).to_have_count(3)
        expect(chart.locator(f'g[data-series="{key}"] path.line')).to_have_attribute(
            "d", re.compile(r"^M[\d.]+ [\d.]+")
        )
    expect(page.locator("#metrics-totals")).to_contain_text("4")
    # Each percentile is named, and drawn with its own dash pattern.
    legend = page.locator("#metrics-legend")
    for text in ("p50 (median, solid)", "p95 (dashed)", "p99 (dotted)"):
        expect(legend).to_contain_text(text)
    dashes = chart.evaluate(
        """svg => ['p50', 'p95', 'p99'].map(key => getComputedStyle(
            svg.querySelector(`g[data-series="${key}"] path.line`)).strokeDasharray)"""
    )
    assert len(set(dashes)) == 3, dashes
    title = chart.locator('g[data-series="p95"] .marker title').first
    assert "2 requests, 1 failed" in title.text_content()
    # Every /api/ request was refused: the series came with the page itself.
    assert watch.errors == []


def test_the_window_moves_on_without_traffic_and_without_a_timer(
    dashboard, watched_page
):
    report(dashboard, request_at(48, 250.0))
    page = open_live(watched_page(), dashboard)
    page.select_option("#metrics-window", "1m")
    chart = page.locator("#metrics-chart")
    expect(chart.locator('g[data-series="p50"] .marker')).to_have_count(1)
    # The request leaves the minute within seconds; nobody reports anything, and
    # the server's metrics samples are what make the page read the window again.
    expect(chart).to_contain_text("No requests reported in this window", timeout=20_000)
    expect(page.locator("#metrics-totals dd").first).to_have_text("0")


def test_a_trace_appears_live_and_its_failed_span_says_so(dashboard, watched_page):
    watch = watched_page()
    fetched: list[float] = []
    watch.page.on(
        "request",
        lambda request: (
            fetched.append(time.monotonic()) if "/api/traces" in request.url else None
        ),
    )
    page = open_live(watch, dashboard)
    expect(page.locator("#traces-body")).to_contain_text("No traces yet.")
    # Once subscribed, the list is read once; then nothing is asked on a timer.
    page.wait_for_timeout(3000)
    settled = len(fetched)
    page.wait_for_timeout(3000)
    assert len(fetched) == settled, "the trace list was fetched on a timer"

    start = time.time() - 1
    spans = [
        {
            "trace_id": TRACE,
            "span_id": ROOT,
            "name": "chat.generate",
            "start": start,
            "end": start + 0.8,
            "service": "chat-api",
        },
        {
            "trace_id": TRACE,
            "span_id": FAILED,
            "parent_span_id": ROOT,
            "name": "POST /api/generate",
            "start": start + 0.1,
            "end": start + 0.7,
            "service": "chat-api",
            "status": "error",
            "status_message": HOSTILE,
        },
    ]
    posted = time.monotonic()
    answer = requests.post(f"{dashboard.url}/api/traces", json=spans, timeout=5)
    assert answer.status_code == 200, answer.text

    row = page.locator(f'#traces-body tr[data-key="{TRACE}"]')
    expect(row).to_contain_text("chat.generate", timeout=3000)
    expect(row).to_contain_text("1 error(s)")
    assert any(at >= posted for at in fetched)

    row.click()
    failed = page.locator('#waterfall .span-row[data-status="error"]')
    expect(failed).to_have_count(1)
    expect(failed.locator(".span-name")).to_contain_text("POST /api/generate error")
    assert HOSTILE in failed.locator(".span-name").get_attribute("title")
    assert "status error" in failed.locator(".span-name").get_attribute("title")
    assert page.locator("img").count() == 0
    assert watch.dialogs == [] and watch.errors == []


def test_a_silent_nodes_vram_is_marked_last_known(live_server_factory, watched_page):
    with running_fleet(2, base="127.0.0.2", port=0, seed=6) as fleet:
        victim = fleet.nodes[0]
        victim.load("llama3.2:3b", size_vram=2 * 2**30, keep_alive=-1)
        server = live_server_factory(
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls), **FAST_PROBING
        )
        server.start()
        wait_for(lambda: all_healthy(server, 2))
        page = open_live(watched_page(), server)
        vram = node_row(page, victim.url).locator("td").nth(6)
        expect(vram).to_have_text(re.compile(r"^\d+\.\d GB$"), timeout=5000)
        held = vram.text_content()
        victim.die()
        # Words, not only grey: what it held when it last answered.
        expect(vram).to_have_text(f"{held} (last known)", timeout=5000)
        expect(vram.locator(".vram-amount")).to_have_class(re.compile(r"\bstale\b"))


def test_paused_logs_hold_at_most_a_screenful_and_say_what_they_dropped(
    dashboard, watched_page
):
    page = open_live(watched_page(), dashboard)
    page.click("#logs-pause")
    records = [
        {"level": "INFO", "logger": "flood", "message": f"line {i}"}
        for i in range(1300)
    ]
    answer = requests.post(
        f"{dashboard.url}/api/logs", json={"records": records}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    expect(page.locator("#logs-state")).to_have_text(
        "paused · 1000 new · 300 older dropped", timeout=5000
    )
    page.click("#logs-pause")
    expect(page.locator("#logs-state")).to_contain_text(
        "300 lines dropped while paused"
    )
    expect(page.locator("#logs-list li").last).to_contain_text("line 1299")
    expect(page.locator("#logs-list li").filter(has_text="line 299")).to_have_count(0)


def test_a_month_is_drawn_from_rollups_and_says_its_percentiles_are_estimates(
    dashboard, watched_page
):
    # Both at one moment: 30 and 20 s ago fell on two days (two markers) in a CI
    # run at midnight UTC.
    report(dashboard, request_at(20, 250.0), request_at(20, 90.0, ok=False))
    page = open_live(watched_page(), dashboard)
    page.select_option("#metrics-window", "30d")
    chart = page.locator("#metrics-chart")
    # One day's bucket, today's, holds both requests.
    expect(chart.locator('g[data-series="p50"] .marker')).to_have_count(1)
    expect(page.locator("#metrics-totals dd").first).to_have_text("2")
    expect(page.locator("#metrics-note")).to_contain_text(
        "percentiles estimated from latency buckets"
    )
    title = chart.locator('g[data-series="p99"] .marker title').first
    assert "2 requests, 1 failed" in title.text_content()

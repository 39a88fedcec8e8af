"""The dashboard page in a real Chromium against a real server and a simulated fleet."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from websockets.sync.client import connect

from frameworks.tests.fakes import FakeDashboard
from simulator.ollama import running_fleet
from simulator.rpc import running_rpc_server
from tests.browser.conftest import ARTIFACTS
from tests.liveserver import wait_for

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
FAST_PROBING = {
    "SOLLOL_PROBE_INTERVAL": "1",
    "SOLLOL_PROBE_TIMEOUT": "1",
    "SOLLOL_DISCOVER_LOCALHOST": "false",
}
HOSTILE = "<img src=x onerror=alert(1)>"
# No timer, no socket, no API call: what shows now came with the page itself.
FROZEN = """
window.setTimeout = () => 0;
window.setInterval = () => 0;
window.requestAnimationFrame = () => 0;
window.WebSocket = function () { throw new Error("sockets are off in this test"); };
"""


def register(server, app_id: str, name: str, **fields) -> None:
    body = {
        "app_id": app_id,
        "name": name,
        "router_type": fields.pop("router_type", "HybridRouter"),
        "version": fields.pop("version", "1.0.0"),
        "metadata": fields.pop("metadata", {}),
    }
    answer = requests.post(
        f"{server.url}/api/applications/register", json=body, timeout=5
    )
    assert answer.status_code == 200, answer.text


def all_healthy(server, count: int):
    nodes = requests.get(f"{server.url}/api/network/nodes", timeout=5).json()
    statuses = [node["status"] for node in nodes["nodes"]]
    return len(statuses) == count and set(statuses) == {"healthy"}


def app_row(page, app_id: str):
    return page.locator(f'#apps-body tr[data-key="{app_id}"]')


def node_row(page, url: str):
    return page.locator("#nodes-body tr").filter(has_text=url)


@pytest.fixture
def fleet():
    with running_fleet(3, base="127.0.0.2", port=0, seed=6) as fleet:
        yield fleet


@pytest.fixture
def dashboard(live_server_factory, fleet):
    server = live_server_factory(
        SOLLOL_OLLAMA_NODES=",".join(fleet.urls), **FAST_PROBING
    )
    server.start()
    wait_for(lambda: all_healthy(server, len(fleet.urls)))
    return server


def open_frozen(watch, server):
    """Open the page with no timer, socket or /api/ call: only what came with it."""
    page = watch.page
    page.add_init_script(FROZEN)
    page.route("**/api/**", lambda route: route.abort())
    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def open_live(watch, server):
    watch.page.goto(server.url + "/")
    expect(watch.page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=10_000
    )
    expect(watch.page.locator("body")).to_have_attribute("data-live", "true")
    return watch.page


def test_it_shows_apps_and_nodes_on_first_paint(dashboard, fleet, watched_page):
    register(dashboard, "first-paint-1", "Router one")
    register(dashboard, "first-paint-2", "Router two")
    watch = watched_page()
    page = open_frozen(watch, dashboard)
    expect(app_row(page, "first-paint-1")).to_contain_text("Router one")
    expect(app_row(page, "first-paint-2")).to_contain_text("Router two")
    for url in fleet.urls:
        expect(node_row(page, url)).to_contain_text("healthy")
    expect(page.locator("#health-status")).to_have_text("healthy")
    expect(page.locator("#count-apps")).to_contain_text("2 active")
    # Every /api/ request was refused: all of the above came with the page itself.
    assert watch.errors == []


def test_it_shows_an_app_registered_after_load_within_a_second(dashboard, watched_page):
    page = open_live(watched_page(), dashboard)
    registered = time.monotonic()
    register(dashboard, "late-arrival", "Late arrival", metadata={"env": "prod"})
    expect(app_row(page, "late-arrival")).to_contain_text("Late arrival", timeout=1000)
    shown = time.monotonic() - registered
    print(f"app visible {shown * 1000:.0f} ms after its registration answered")
    assert shown <= 1.0
    expect(app_row(page, "late-arrival")).to_contain_text("active")
    expect(page.locator("#feed li[data-kind=applications]").first).to_contain_text(
        "Late arrival"
    )
    # Words, not pictographs that show as boxes where no emoji font is installed.
    said = page.locator("#feed li[data-kind=applications] .msg").first.text_content()
    assert said.startswith("Application started: Late arrival"), said
    # Uptime in the server's time: never negative, however the clocks differ.
    uptime = app_row(page, "late-arrival").locator("td").nth(4)
    expect(uptime).to_have_text(re.compile(r"^\d+ s$"))


def test_ages_are_in_the_servers_time_whatever_the_browsers_clock_says(
    dashboard, watched_page
):
    """A browser whose clock is an hour ahead of the server's (no NTP on an
    offline network) still shows an app started just now as seconds old."""
    register(dashboard, "skewed-clock", "Skewed clock")
    watch = watched_page()
    watch.page.clock.set_system_time(time.time() + 3600)
    page = open_live(watch, dashboard)
    row = app_row(page, "skewed-clock")
    expect(row).to_contain_text("Skewed clock")
    # Uptime, then "last seen": seconds, not an hour.
    expect(row.locator("td").nth(4)).to_have_text(re.compile(r"^\d+ s$"))
    expect(row.locator("td").nth(5)).to_contain_text(re.compile(r"\d+ s"))


def test_it_turns_a_killed_node_unhealthy_within_the_probe_deadline(
    dashboard, fleet, watched_page
):
    page = open_live(watched_page(), dashboard)
    victim = fleet.nodes[0]
    row = node_row(page, victim.url)
    expect(row).to_contain_text("healthy")
    killed = time.monotonic()
    victim.die()
    # interval + timeout + 0.5 s, as the API promises (tests/test_network_live.py)
    expect(row.locator(".badge")).to_have_text("unhealthy", timeout=3500)
    print(f"node shown unhealthy {time.monotonic() - killed:.2f} s after it died")
    expect(page.locator("#health-status")).to_have_text("degraded", timeout=3000)
    expect(page.locator("#health-reason")).to_contain_text("1 of 3 nodes are down")


def test_it_shows_a_hostile_app_name_as_text_and_runs_nothing(dashboard, watched_page):
    register(dashboard, "hostile-before", HOSTILE, metadata={"note": HOSTILE})
    watch = watched_page()
    page = open_live(watch, dashboard)
    register(dashboard, "hostile-after", HOSTILE, router_type=HOSTILE)
    for app_id in ("hostile-before", "hostile-after"):
        expect(app_row(page, app_id).locator("td").first).to_have_text(HOSTILE)
    metadata = app_row(page, "hostile-before").locator("details")
    metadata.locator("summary").click()
    expect(metadata.locator("pre")).to_contain_text(HOSTILE)
    expect(page.locator("#feed")).to_contain_text(HOSTILE)
    page.wait_for_timeout(500)  # time for an onerror handler to have run
    assert page.locator("img").count() == 0
    assert watch.dialogs == []
    assert watch.errors == []
    policy = requests.get(dashboard.url + "/", timeout=5).headers[
        "Content-Security-Policy"
    ]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def _application_event_ids(server) -> list[int]:
    ids = []
    with connect(f"ws://127.0.0.1:{server.port}/ws/applications?since=0") as ws:
        while True:
            try:
                ids.append(json.loads(ws.recv(timeout=1.0))["id"])
            except TimeoutError:
                return ids


def test_it_reconnects_after_a_server_restart_and_misses_no_event(
    dashboard, watched_page
):
    register(dashboard, "before-restart", "Before restart")
    page = open_live(watched_page(), dashboard)
    expect(app_row(page, "before-restart")).to_be_visible()

    dashboard.stop()
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "reconnecting", timeout=5000
    )
    expect(page.locator("#connection-text")).to_contain_text("Reconnecting")
    dashboard.start()
    # Written at once, most likely before the page is back: replay must bring them.
    register(dashboard, "after-restart-1", "After restart one")
    register(dashboard, "after-restart-2", "After restart two")
    requests.post(
        f"{dashboard.url}/api/applications/before-restart/unregister", timeout=5
    )

    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=15_000
    )
    expect(app_row(page, "after-restart-1")).to_be_visible(timeout=5000)
    expect(app_row(page, "after-restart-2")).to_be_visible()
    expect(app_row(page, "before-restart")).to_have_count(0)

    stored = _application_event_ids(dashboard)
    shown = page.eval_on_selector_all(
        "#feed li[data-kind=applications]", "items => items.map(i => +i.dataset.id)"
    )
    assert len(shown) == len(set(shown)), "an event was shown twice"
    assert sorted(shown) == sorted(stored)


def test_it_saves_a_screenshot_of_the_populated_dashboard(
    live_server_factory, watched_page
):
    # Ray and Dask as their dashboards answered when recorded (frameworks/tests/data).
    ray, dask = FakeDashboard.ray(), FakeDashboard.dask()
    try:
        _screenshot(live_server_factory, watched_page, ray.url, dask.url)
    finally:
        ray.close()
        dask.close()


def _screenshot(live_server_factory, watched_page, ray_url, dask_url) -> None:
    with (
        running_fleet(6, base="127.0.0.2", port=0, seed=3) as fleet,
        running_rpc_server("127.0.0.8", 0, protocol="3.0.0") as backend,
    ):
        server = live_server_factory(
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls),
            SOLLOL_RPC_BACKENDS=f"127.0.0.8:{backend.port}",
            SOLLOL_RAY_DASHBOARD_URL=ray_url,
            SOLLOL_DASK_DASHBOARD_URL=dask_url,
            SOLLOL_FRAMEWORK_INTERVAL="1",
            **FAST_PROBING,
        )
        server.start()
        wait_for(lambda: all_healthy(server, 6))
        _populate(server, fleet)
        fleet.nodes[5].die()
        wait_for(lambda: not all_healthy(server, 6))
        page = open_live(watched_page(viewport={"width": 1600, "height": 1100}), server)
        expect(page.locator("#logs-list li").first).to_be_visible()
        for kind in ("ray", "dask"):
            expect(page.locator(f"#framework-{kind} h3 .badge")).to_have_text(
                "active", timeout=10_000
            )
        page.locator("#traces-body tr").first.click()
        expect(page.locator("#waterfall .span-row").first).to_be_visible()
        page.evaluate("window.scrollTo(0, 0)")  # the sticky header at the top
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / "dashboard.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the populated dashboard: {path}")
        assert path.stat().st_size > 20_000
        if os.environ.get("SOLLOL_UPDATE_DOCS_SCREENSHOT"):
            shutil.copyfile(path, REPO / "docs" / "dashboard.png")


def _populate(server, fleet) -> None:
    apps = [
        (
            "chat-api",
            "Chat API",
            "HybridRouter",
            "2.3.1",
            {"env": "prod", "team": "web"},
        ),
        ("batch-embed", "Batch embeddings", "RayRouter", "0.9.0", {"env": "batch"}),
        ("rag-search", "RAG search", "OllamaPool", "1.4.0", {"region": "lab"}),
    ]
    for app_id, name, router, version, metadata in apps:
        register(
            server, app_id, name, router_type=router, version=version, metadata=metadata
        )
    nodes = [url.removeprefix("http://") for url in fleet.urls]
    requests_ = [
        {
            "node": nodes[i % 3],
            "model": ["llama3.2:3b", "qwen2.5:7b"][i % 2],
            "latency_ms": 300 + 37 * i,
            "ok": i % 7 != 0,
            "prompt_tokens": 40,
            "completion_tokens": 120,
        }
        for i in range(40)
    ]
    requests.post(
        f"{server.url}/api/activity",
        json={"app_id": "chat-api", "requests": requests_},
        timeout=5,
    )
    records = [
        {"level": level, "logger": "router", "message": message}
        for level, message in [
            ("INFO", "routing request to 127.0.0.2"),
            ("WARNING", "node answered slowly (1.2 s)"),
            ("ERROR", "request failed: connection reset"),
            ("INFO", "model llama3.2:3b warm on 2 nodes"),
        ]
    ]
    requests.post(
        f"{server.url}/api/logs",
        json={"app_id": "chat-api", "records": records},
        timeout=5,
    )
    start = time.time() - 2
    spans = [
        {
            "trace_id": "ab" * 16,
            "span_id": "01" * 8,
            "name": "chat.generate",
            "start": start,
            "end": start + 1.2,
            "service": "chat-api",
        },
        {
            "trace_id": "ab" * 16,
            "span_id": "02" * 8,
            "parent_span_id": "01" * 8,
            "name": "route",
            "start": start + 0.01,
            "end": start + 0.05,
            "service": "chat-api",
        },
        {
            "trace_id": "ab" * 16,
            "span_id": "03" * 8,
            "parent_span_id": "01" * 8,
            "name": "POST /api/generate",
            "start": start + 0.06,
            "end": start + 1.15,
            "service": "chat-api",
        },
    ]
    requests.post(f"{server.url}/api/traces", json=spans, timeout=5)
    requests.post(
        f"{server.url}/api/applications/heartbeat",
        json={"app_id": "rag-search", "metadata": {"requests_processed": 1000}},
        timeout=5,
    )


def test_it_follows_latencies_and_quiet_heartbeats_without_polling(
    dashboard, fleet, watched_page
):
    """Probe latencies and heartbeats that change nothing are no events: the
    server pushes them as samples, and the page asks for nothing on a timer."""
    register(dashboard, "pulse", "Pulse App")
    watch = watched_page()
    polled = []
    watch.page.on(
        "request",
        lambda request: (
            polled.append(request.url)
            if "/api/network/nodes" in request.url or "/api/applications" in request.url
            else None
        ),
    )
    page = open_live(watch, dashboard)
    # Probed every second: the sparkline draws itself from the samples.
    spark = node_row(page, fleet.urls[0]).locator("svg.spark polyline")
    expect(spark).to_have_attribute("points", re.compile(r"\d"), timeout=8000)
    # Heartbeats with nothing new, for longer than the page has been open.
    seen = app_row(page, "pulse").locator("td").nth(5)
    for _ in range(12):
        beat = requests.post(
            f"{dashboard.url}/api/applications/heartbeat",
            json={"app_id": "pulse"},
            timeout=5,
        )
        assert beat.status_code == 200
        time.sleep(1)
    expect(seen).to_have_text(re.compile(r"^[0-9] s ago$"), timeout=6000)
    # The kept probes, read once at load for the sparklines; then nothing.
    kept = [url for url in polled if "/api/network/nodes/history?" in url]
    assert len(kept) == 1
    assert [url for url in polled if url not in kept] == []

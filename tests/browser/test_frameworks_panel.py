"""The Ray & Dask panel in a real Chromium, following a real Dask cluster live."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from conftest import require
from frameworks.tests.fakes import FakeDashboard
from tests.clusters import DaskCluster, importable

pytestmark = pytest.mark.live


@pytest.fixture
def dask_cluster():
    require(
        importable("distributed") and importable("bokeh"),
        "distributed and bokeh are not installed (pip install distributed bokeh)",
    )
    cluster = DaskCluster(n_workers=1).start()
    yield cluster
    cluster.stop()


def dashboard_of_dask(live_server_factory, url: str):
    """A started dashboard collecting the Dask at url every second, and no Ray."""
    server = live_server_factory(
        SOLLOL_DASK_DASHBOARD_URL=url,
        SOLLOL_RAY_DASHBOARD_URL="",
        SOLLOL_FRAMEWORK_INTERVAL="1",
        SOLLOL_DISCOVER_LOCALHOST="false",
    )
    server.start()
    return server


def fact(panel, label: str):
    return panel.locator(f'dt:text-is("{label}") + dd')


def test_it_follows_a_dask_cluster_scaling_up_without_reload_or_polling(
    live_server_factory, dask_cluster, watched_page
):
    server = dashboard_of_dask(live_server_factory, dask_cluster.dashboard_url)
    watch = watched_page()
    page = watch.page
    asked = []
    page.on("request", lambda request: asked.append(request.url))
    # By name, not 127.0.0.1: the cluster's loopback URL must become a link on
    # the host the browser used, as it would for a browser on another machine.
    with page.expect_response(lambda r: "/api/dask/metrics" in r.url) as first:
        page.goto(f"http://localhost:{server.port}/")
        expect(page.locator("#connection")).to_have_attribute(
            "data-state", "live", timeout=10_000
        )
    assert first.value.status == 200
    panel = page.locator("#framework-dask")
    expect(panel.locator("h3 .badge")).to_have_text("active", timeout=10_000)
    expect(fact(panel, "Workers")).to_have_text("1")
    dask_port = dask_cluster.dashboard_url.rsplit(":", 1)[1]
    expect(panel.get_by_role("link", name="Open the Dask dashboard")).to_have_attribute(
        "href", f"http://localhost:{dask_port}/"
    )
    spark = panel.locator("svg.spark polyline")
    expect(spark).to_have_attribute("points", re.compile(r"\d"), timeout=10_000)
    page.wait_for_timeout(500)  # whatever the opening asked for has been asked
    page.evaluate("window.sameDocument = true")
    before = len(asked)
    drawn = spark.get_attribute("points")

    scaled = time.monotonic()
    dask_cluster.cluster.scale(2)
    expect(fact(panel, "Workers")).to_have_text("2", timeout=15_000)
    print(f"2 workers shown {time.monotonic() - scaled:.1f} s after scale(2)")
    expect(spark).not_to_have_attribute("points", drawn)
    # Long enough for any timer-driven refresh (collections come every second).
    page.wait_for_timeout(max(0, 6000 - 1000 * (time.monotonic() - scaled)))

    assert page.evaluate("window.sameDocument === true"), "the page was reloaded"
    # The fleet history panel reads its charts again when the server's clock (the
    # metrics sample, every 5 s) says a step of them went by: pushed, not polled,
    # and whether one falls in these 6 s depends only on when the server started.
    asked = [
        url
        for url in asked[before:]
        if not re.search(r"/api/network/(history|availability)\?window=", url)
    ]
    assert asked == [], "the page asked the server for something"
    expect(panel.locator("h3 .badge")).to_have_text("active")
    assert watch.errors == []


def test_it_says_when_the_metrics_fail_and_tries_again_while_following_the_stream(
    live_server_factory, watched_page
):
    dask = FakeDashboard.dask()
    try:
        server = dashboard_of_dask(live_server_factory, dask.url)
        watch = watched_page()
        page = watch.page
        sockets = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        answers = []

        def database_blip(route):
            # The first two answers are what a request gets while the database is
            # away; then the API is back.
            answers.append(route.request.url)
            if len(answers) <= 2:
                route.fulfill(status=503, json={"error": "database unavailable"})
            else:
                route.continue_()

        page.route("**/api/dask/metrics", database_blip)
        page.goto(server.url + "/")
        panel = page.locator("#framework-dask")
        expect(panel.locator(".fw-state")).to_contain_text(
            "Could not load the metrics", timeout=10_000
        )
        expect(panel.locator(".fw-state")).to_contain_text("trying again")
        assert any("/ws/frameworks" in url and "samples=1" in url for url in sockets)
        expect(panel.locator(".fw-state")).to_have_count(0, timeout=10_000)
        expect(panel.locator("h3 .badge")).to_have_text("active")
        expect(panel.locator('dt:text-is("Workers") + dd')).to_have_text("2")
        assert len(answers) == 3
        assert watch.errors == []
    finally:
        dask.close()

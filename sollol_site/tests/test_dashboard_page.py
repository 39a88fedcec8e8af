"""The dashboard page as served: its snapshot, its escaping and its security headers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from activity.services import NewEvent, record_events
from applications.api.serializers import AppReport
from applications.services import register_application
from network.choices import NODE_STREAM

HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)

pytestmark = pytest.mark.django_db


def snapshot_of(response) -> dict:
    match = re.search(
        r'<script id="dashboard-snapshot" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.DOTALL,
    )
    assert match, "the page carries no snapshot"
    return json.loads(match.group(1))


def test_it_sends_a_policy_without_inline_scripts(client):
    response = client.get("/")
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-src 'none'" in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    for attributes in SCRIPT_TAG.findall(response.content.decode()):
        assert "src=" in attributes or 'type="application/json"' in attributes


def test_it_lets_frames_show_only_the_framework_dashboards(client, settings):
    settings.SOLLOL_RAY_PUBLIC_URL = "https://ray.example.test:8265/some/path"
    settings.SOLLOL_DASK_PUBLIC_URL = ""
    settings.SOLLOL_DASK_DASHBOARD_URL = "http://127.0.0.1:8787"
    policy = client.get("/", HTTP_HOST="127.0.0.1:8080")["Content-Security-Policy"]
    assert "frame-src https://ray.example.test:8265 http://127.0.0.1:8787;" in policy


def test_a_remote_browser_gets_links_and_frames_on_the_host_it_used(client, settings):
    # The dashboard served on 0.0.0.0 watches Ray at 127.0.0.1: a browser that
    # came by 10.1.2.3 must be sent there, not to its own loopback.
    settings.ALLOWED_HOSTS = ["10.1.2.3"]
    settings.SOLLOL_RAY_DASHBOARD_URL = "http://127.0.0.1:8265"
    settings.SOLLOL_RAY_PUBLIC_URL = ""
    settings.SOLLOL_DASK_DASHBOARD_URL = ""

    response = client.get("/", HTTP_HOST="10.1.2.3:8080")

    assert response.status_code == 200
    assert '<a href="http://10.1.2.3:8265"' in response.content.decode()
    assert 'href="http://127.0.0.1:8265' not in response.content.decode()
    assert "frame-src http://10.1.2.3:8265;" in response["Content-Security-Policy"]
    assert snapshot_of(response)["frameworks"]["ray"]["public_url"] == (
        "http://10.1.2.3:8265"
    )


def test_a_configured_public_url_wins_over_the_browsers_host(client, settings):
    settings.ALLOWED_HOSTS = ["10.1.2.3"]
    settings.SOLLOL_RAY_DASHBOARD_URL = "http://127.0.0.1:8265"
    settings.SOLLOL_RAY_PUBLIC_URL = "https://ray.example.test"
    settings.SOLLOL_DASK_DASHBOARD_URL = ""

    response = client.get("/", HTTP_HOST="10.1.2.3:8080")

    assert '<a href="https://ray.example.test"' in response.content.decode()
    assert "10.1.2.3:8265" not in response.content.decode()
    assert "frame-src https://ray.example.test;" in response["Content-Security-Policy"]


def test_it_escapes_a_hostile_app_name_in_the_html_and_the_snapshot(client):
    register_application(
        AppReport(app_id="hostile", name=HOSTILE, metadata={"note": HOSTILE}),
        now=timezone.now(),
    )
    response = client.get("/")
    body = response.content.decode()
    assert HOSTILE not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    [app] = snapshot_of(response)["applications"]
    assert app["name"] == HOSTILE


def test_it_resumes_each_stream_after_the_events_it_rendered(client):
    [event] = record_events(
        [NewEvent(NODE_STREAM, "node_discovered", "Node found", {"node": "x"})],
        now=timezone.now(),
    )
    snapshot = snapshot_of(client.get("/"))
    assert snapshot["watermarks"]["nodes"] == event.id
    assert snapshot["watermarks"]["applications"] == 0
    assert [e["id"] for e in snapshot["feed"]] == [event.id]


def test_the_page_comes_with_the_metrics_series_to_draw(client):
    from activity import metrics

    reported = metrics.parse_activity(
        {"node": "127.0.0.2:11434", "model": "m", "latency_ms": 80.0}
    )
    metrics.record_requests(reported, now=timezone.now())
    series = snapshot_of(client.get("/"))["metrics"]["series"]
    assert len(series) in (30, 31)  # the page's default window and buckets
    drawn = [b for b in series if b["latency_ms"]["p50"] is not None]
    assert [b["latency_ms"]["p95"] for b in drawn] == [80.0]


SCRIPTS = Path(settings.BASE_DIR) / "static" / "dashboard"
COMMENTS = re.compile(r"/\*.*?\*/|(?<![:\"'])//[^\n]*", re.DOTALL)
PARSES_HTML = re.compile(
    r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\("
)
PANEL_IMPORT = re.compile(r'\bfrom\s+"\./([\w-]+\.js)"')


def test_the_page_scripts_never_parse_what_they_show_as_html():
    scripts = sorted(SCRIPTS.rglob("*.js"))
    assert SCRIPTS / "main.js" in scripts
    for script in scripts:
        code = COMMENTS.sub("", script.read_text())
        assert not PARSES_HTML.search(code), script.name


def test_panels_import_no_other_panel():
    # What one panel needs of another comes as a callback from main.js.
    for panel in sorted((SCRIPTS / "panels").glob("*.js")):
        assert PANEL_IMPORT.findall(panel.read_text()) == [], panel.name

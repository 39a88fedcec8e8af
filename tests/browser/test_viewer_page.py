"""A viewer signs in on the page's own /login/, watches the fleet live, and
cannot change it; signing out ends it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.test_dashboard_page import app_row
from tests.liveserver import REPO

pytestmark = pytest.mark.live

READ, WRITE = "read-t0ken", "write-t0ken"


def test_a_viewer_signs_in_watches_live_and_signs_out(
    live_server_factory, watched_page
):
    server = live_server_factory(
        SOLLOL_READ_TOKEN=READ,
        SOLLOL_API_TOKEN=WRITE,
        SOLLOL_DISCOVER_LOCALHOST="false",
    )
    server.start()
    made = subprocess.run(
        [sys.executable, "manage.py", "viewer", "add", "alice", "--password-stdin"],
        cwd=REPO,
        env=server.env,
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr

    watch = watched_page()
    page = watch.page
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login/?next=%2F")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator("#signin-error")).to_be_visible()

    page.fill("#id_username", "alice")
    page.fill("#id_password", "correct horse battery")
    page.click("button[type=submit]")
    expect(page).to_have_url(server.url + "/")
    # The streams take the session: the page goes live.
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=10_000
    )
    expect(page.locator("#signed-in")).to_contain_text("alice (viewer)")
    # Looking, not changing: no silences offered.
    expect(page.locator("#silence-new")).to_be_hidden()

    registered = requests.post(
        f"{server.url}/api/applications/register",
        json={"app_id": "seen-by-alice", "name": "Watched"},
        headers={"Authorization": f"Bearer {WRITE}"},
        timeout=5,
    )
    assert registered.status_code == 200, registered.text
    expect(app_row(page, "seen-by-alice")).to_contain_text("Watched", timeout=5000)

    page.click("#signed-in button[type=submit]")
    expect(page).to_have_url(server.url + "/login/")
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login/?next=%2F")
    assert watch.dialogs == []

"""The page's own assets come from `manage.py serve` itself, with DEBUG off."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
import requests

pytestmark = pytest.mark.live

# `import ... from "./x.js"`, `import "./x.js"` and `export ... from "./x.js"`.
MODULE_IMPORT = re.compile(
    r'^\s*(?:import|export)\b[^"\'`;]*?["\'](\.{1,2}/[^"\']+)["\']', re.MULTILINE
)
JAVASCRIPT = {"text/javascript", "application/javascript"}


def test_it_serves_every_asset_the_page_uses_without_debug(live_dashboard):
    page = requests.get(live_dashboard.url + "/", timeout=5)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"main.js", "dashboard.css"}
    for asset in assets:
        answer = requests.get(live_dashboard.url + asset, timeout=5)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 100, asset
    # Nothing from anywhere else: the page works on a machine without internet.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text)


def test_every_module_the_page_imports_is_served_as_javascript(live_dashboard):
    page = requests.get(live_dashboard.url + "/", timeout=5).text
    [entry] = re.findall(r'<script type="module" src="(/static/[^"]+)"', page)
    # A browser runs a module only with a JavaScript MIME type (and the page
    # says nosniff): follow every import from the entry point.
    pending, served = [urljoin(live_dashboard.url, entry)], {}
    while pending:
        url = pending.pop()
        if url in served:
            continue
        answer = requests.get(url, timeout=5)
        assert answer.status_code == 200, url
        mime = answer.headers["Content-Type"].split(";")[0].strip()
        assert mime in JAVASCRIPT, (url, mime)
        served[url] = answer.text
        pending += [urljoin(url, path) for path in MODULE_IMPORT.findall(answer.text)]
    names = {url.split("/static/dashboard/", 1)[1] for url in served}
    assert {"main.js", "streams.js", "state.js", "dom.js", "panels/nodes.js"} <= names
    # Modules of the page only, all from this server.
    assert all(url.startswith(live_dashboard.url + "/static/") for url in served)

"""The page's own assets come from `manage.py serve` itself, with DEBUG off."""

from __future__ import annotations

import re

import pytest
import requests

pytestmark = pytest.mark.live


def test_it_serves_every_asset_the_page_uses_without_debug(live_dashboard):
    page = requests.get(live_dashboard.url + "/", timeout=5)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"dashboard.js", "dashboard.css"}
    for asset in assets:
        answer = requests.get(live_dashboard.url + asset, timeout=5)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 100, asset
    # Nothing from anywhere else: the page works on a machine without internet.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text)

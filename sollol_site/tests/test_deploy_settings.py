"""Production settings: `check --deploy` is clean with deploy/'s variables, a weak
secret key is refused at start, and SOLLOL_HTTPS sends pages (not API calls) to
HTTPS with secure cookies and HSTS."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "sollol.env.example"


def example_environment() -> dict[str, str]:
    """The variables deploy/sollol.env.example sets, as an operator fills it in."""
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    values["SOLLOL_SECRET_KEY"] = secrets.token_urlsafe(50)
    return values


def manage(tmp_path, variables: dict[str, str], *args: str):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SOLLOL_", "DATABASE_URL", "REDIS_URL"))
    }
    env |= variables | {"SOLLOL_DATA_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_with_the_documented_production_variables(tmp_path):
    variables = example_environment()
    clean = manage(tmp_path, variables, "check", "--deploy", "--fail-level", "WARNING")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no issues" in clean.stdout

    # Without HTTPS declared, Django says what is missing.
    del variables["SOLLOL_HTTPS"]
    warned = manage(tmp_path, variables, "check", "--deploy", "--fail-level", "WARNING")
    assert warned.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in warned.stderr, check


@pytest.mark.parametrize(
    "key",
    [
        "short",
        "change-me-to-50-or-more-random-characters-from-the-line-above",
        "a" * 60,
    ],
)
def test_a_weak_or_example_secret_key_is_refused_at_start(tmp_path, key):
    refused = manage(tmp_path, {"SOLLOL_SECRET_KEY": key}, "check")
    assert refused.returncode != 0
    assert "SOLLOL_SECRET_KEY must be 50 or more random characters" in refused.stderr


@pytest.mark.django_db
def test_https_redirects_pages_but_not_api_calls(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 300
    host = {"HTTP_HOST": "127.0.0.1"}
    browser = Client()
    page = browser.get("/", **host)
    assert page.status_code == 301 and page["Location"] == "https://127.0.0.1/"
    behind_tls = browser.get("/", HTTP_X_FORWARDED_PROTO="https", **host)
    assert behind_tls.status_code == 200
    assert behind_tls["Strict-Transport-Security"] == "max-age=300"
    # An application's POST over plain HTTP is served, not turned into a GET.
    unregistered = browser.post(
        "/api/applications/unregister",
        {"app_id": "plain-http"},
        content_type="application/json",
        **host,
    )
    assert unregistered.status_code == 404, unregistered.content  # served: no app
    assert browser.get("/api/network/nodes", **host).status_code == 200

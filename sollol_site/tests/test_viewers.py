"""Viewers: people who may look but not change, signing in at the page's own /login/."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client

from core.tokens import VIEWERS_GROUP

pytestmark = pytest.mark.django_db

HOST = {"HTTP_HOST": "127.0.0.1"}


def csrf_of(page) -> str:
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)[
        1
    ].decode()


def sign_in(browser: Client, username: str, password: str):
    form = browser.get("/login/?next=/", **HOST)
    assert form.status_code == 200
    return browser.post(
        "/login/",
        {
            "username": username,
            "password": password,
            "next": "/",
            "csrfmiddlewaretoken": csrf_of(form),
        },
        **HOST,
    )


def viewers() -> Group:
    return Group.objects.get_or_create(name=VIEWERS_GROUP)[0]


def test_a_viewer_signs_in_reads_everything_and_changes_nothing(
    settings, django_user_model
):
    settings.SOLLOL_READ_TOKENS = ["read-me"]
    settings.SOLLOL_API_TOKENS = ["write-me"]
    django_user_model.objects.create_user("nobody", password="pw-nobody").save()
    alice = django_user_model.objects.create_user("alice", password="pw-alice")
    alice.groups.add(viewers())
    browser = Client(enforce_csrf_checks=True)

    page = browser.get("/", **HOST)
    assert page.status_code == 302 and page["Location"] == "/login/?next=%2F"

    # An account that is neither staff nor a viewer is told why, and stays out.
    refused = sign_in(browser, "nobody", "pw-nobody")
    assert refused.status_code == 200
    assert b"may not view the dashboard" in refused.content
    assert browser.get("/api/network/nodes", **HOST).status_code == 401
    wrong = sign_in(browser, "alice", "not-her-password")
    assert (
        wrong.status_code == 200 and b"correct username and password" in wrong.content
    )

    signed_in = sign_in(browser, "alice", "pw-alice")
    assert signed_in.status_code == 302 and signed_in["Location"] == "/"
    page = browser.get("/", **HOST)
    assert page.status_code == 200
    assert b"alice (viewer)" in page.content and b"Sign out" in page.content
    assert b'"can_write": false' in page.content
    for path in ("/api/network/nodes", "/api/applications", "/api/alerts", "/api/logs"):
        assert browser.get(path, **HOST).status_code == 200, path

    # Writes stay staff's: with or without the page's CSRF token.
    token = re.search(rb'name="csrf-token" content="([^"]+)"', page.content)[1]
    write = browser.post(
        "/api/alerts/silences",
        {"rule": "node_down", "subject": "*", "duration_seconds": 60},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token.decode(),
        **HOST,
    )
    assert write.status_code == 401

    # Signing out (a POST with the page's token) ends reading.
    out = browser.post("/logout/", {"csrfmiddlewaretoken": token.decode()}, **HOST)
    assert out.status_code == 302 and out["Location"] == "/login/"
    assert browser.get("/api/network/nodes", **HOST).status_code == 401


def test_staff_sign_in_on_the_same_page_and_may_write(settings, django_user_model):
    settings.SOLLOL_READ_TOKENS = ["read-me"]
    settings.SOLLOL_API_TOKENS = ["write-me"]
    django_user_model.objects.create_user("ops", password="pw-ops", is_staff=True)
    browser = Client(enforce_csrf_checks=True)
    assert sign_in(browser, "ops", "pw-ops").status_code == 302
    page = browser.get("/", **HOST)
    assert b'"can_write": true' in page.content
    assert b"(viewer)" not in page.content


def test_an_inactive_viewer_cannot_sign_in(django_user_model):
    user = django_user_model.objects.create_user("gone", password="pw", is_active=False)
    user.groups.add(viewers())
    refused = sign_in(Client(enforce_csrf_checks=True), "gone", "pw")
    assert refused.status_code == 200 and b"signin-error" in refused.content


def test_a_signed_in_viewer_going_to_login_is_sent_to_the_page(django_user_model):
    user = django_user_model.objects.create_user("bob", password="pw")
    user.groups.add(viewers())
    browser = Client()
    browser.force_login(user)
    assert browser.get("/login/", **HOST)["Location"] == "/"


def test_the_viewer_command_adds_lists_and_removes(monkeypatch, django_user_model):
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    out = io.StringIO()
    call_command("viewer", "add", "carol", "--password-stdin", stdout=out)
    assert "created viewer carol" in out.getvalue()
    carol = django_user_model.objects.get(username="carol")
    assert carol.check_password("a-long-password") and not carol.is_staff
    assert Client().login(username="carol", password="a-long-password")

    out = io.StringIO()
    call_command("viewer", "list", stdout=out)
    assert out.getvalue().split() == ["carol"]

    call_command("viewer", "remove", "carol", stdout=io.StringIO())
    assert not carol.groups.filter(name=VIEWERS_GROUP).exists()
    with pytest.raises(CommandError, match="not a viewer"):
        call_command("viewer", "remove", "carol")

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(CommandError, match="too short"):
        call_command("viewer", "add", "dave", "--password-stdin")
    assert not django_user_model.objects.filter(username="dave").exists()

"""SOLLOL_READ_TOKEN: reads need a token or a login; without it they stay open."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import override_settings

from core.tokens import VIEWERS_GROUP
from sollol_site.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1:8080")


@pytest.mark.django_db
@override_settings(SOLLOL_READ_TOKENS=["read-me"], SOLLOL_API_TOKENS=["write-me"])
def test_reads_need_a_token_or_a_login(client):
    for path in ("/api/applications", "/api/network/nodes", "/api/prometheus"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert refused["WWW-Authenticate"] == "Bearer"
        assert "Bearer" in refused.json()["error"]
        assert client.get(path, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        for token in ("read-me", "write-me"):
            allowed = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
            assert allowed.status_code == 200, path
    # The page sends people to sign in, and comes back after.
    page = client.get("/")
    assert page.status_code == 302 and page["Location"] == "/login/?next=%2F"
    user = get_user_model().objects.create_user("operator", password="pw")
    client.force_login(user)
    # Signed in is not enough: staff or the viewers group.
    assert client.get("/api/applications").status_code == 401
    user.groups.add(Group.objects.get_or_create(name=VIEWERS_GROUP)[0])
    assert client.get("/").status_code == 200
    assert client.get("/api/applications").status_code == 200


@pytest.mark.django_db
def test_without_a_read_token_reads_stay_open(client):
    assert client.get("/api/applications").status_code == 200
    assert client.get("/").status_code == 200


async def stream(headers, path: str = "/ws/applications") -> tuple[bool, object]:
    """Return (allowed, close code): a refused socket is told why, then closed."""
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])
    connected, code = await communicator.connect(timeout=5)
    if not connected:
        return False, code
    if await communicator.receive_nothing(timeout=0.5):
        await communicator.disconnect()
        return True, None
    said = await communicator.receive_json_from()
    closed = await communicator.receive_output()
    assert said["type"] == "error" and said["message"]
    assert closed["type"] == "websocket.close", closed
    return False, closed["code"]


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_READ_TOKENS=["read-me"])
async def test_streams_need_a_token_or_a_session():
    assert await stream([]) == (False, 4401)
    assert await stream([(b"authorization", b"Bearer nope")]) == (False, 4401)
    assert (await stream([(b"authorization", b"Bearer read-me")]))[0] is True
    # A browser cannot set headers on a WebSocket; it sends its session cookie.
    from asgiref.sync import sync_to_async
    from django.test import Client

    def logged_in_cookie(name: str, viewer: bool) -> bytes:
        user = get_user_model().objects.create_user(name, password="pw")
        if viewer:
            user.groups.add(Group.objects.get_or_create(name=VIEWERS_GROUP)[0])
        browser = Client()
        browser.force_login(user)
        return f"sessionid={browser.cookies['sessionid'].value}".encode()

    cookie = await sync_to_async(logged_in_cookie)("viewer", True)
    assert (await stream([(b"cookie", cookie)]))[0] is True
    # A user who is neither staff nor a viewer is refused like a stranger.
    cookie = await sync_to_async(logged_in_cookie)("someone", False)
    assert await stream([(b"cookie", cookie)]) == (False, 4401)


@pytest.mark.django_db
def test_other_sites_get_no_cors_grant(client):
    """CORS stays closed: a page on another origin cannot read the API's answers."""
    evil = {"HTTP_ORIGIN": "http://evil.example"}
    assert "Access-Control-Allow-Origin" not in client.get("/api/applications", **evil)
    preflight = client.options(
        "/api/applications/register",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        **evil,
    )
    assert "Access-Control-Allow-Origin" not in preflight
    assert "Access-Control-Allow-Methods" not in preflight


@pytest.mark.django_db
def test_the_pages_own_forms_need_their_csrf_token():
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    get_user_model().objects.create_superuser("admin", password="pw")
    forged = browser.post("/admin/login/", {"username": "admin", "password": "pw"})
    assert forged.status_code == 403
    form = browser.get("/admin/login/")
    token = form.cookies["csrftoken"].value
    real = browser.post(
        "/admin/login/",
        {"username": "admin", "password": "pw", "csrfmiddlewaretoken": token},
    )
    assert real.status_code == 302


@pytest.mark.django_db
def test_the_page_carries_its_security_headers(client):
    page = client.get("/")
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"
    assert page["X-Frame-Options"] == "DENY"  # nobody frames the dashboard
    policy = dict(
        part.strip().split(" ", 1)
        for part in page["Content-Security-Policy"].split(";")
    )
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["frame-ancestors"] == "'none'"


@pytest.mark.django_db(transaction=True)
async def test_an_unknown_stream_is_closed_with_4404_not_a_500():
    assert await stream([], path="/ws/no-such-stream") == (False, 4404)
    assert await stream([], path="/ws/applications/extra") == (False, 4404)

"""Configurable limits: metadata size and depth, applications per write token."""

from __future__ import annotations

import json

import pytest
from channels.testing import HttpCommunicator
from django.test import override_settings

from applications.models import Application
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def post(path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    raw = json.dumps(body).encode()
    headers.append((b"content-length", str(len(raw)).encode()))
    communicator = HttpCommunicator(
        application, "POST", path, body=raw, headers=headers
    )
    response = await communicator.get_response(timeout=10)
    return response["status"], json.loads(response["body"])


def app(app_id: str, **metadata) -> dict:
    return {"app_id": app_id, "name": app_id.title(), "metadata": metadata}


@override_settings(SOLLOL_MAX_METADATA_BYTES=1000, SOLLOL_METADATA_MAX_DEPTH=3)
async def test_metadata_is_bounded_in_size_and_depth_on_both_lanes():
    for path in ("/api/applications/register", "/api/applications/heartbeat"):
        status, body = await post(path, app("big", blob="x" * 1200))
        assert status == 400 and "at most 1000" in body["error"]
        status, body = await post(path, app("deep", a={"b": {"c": {"d": 1}}}))
        assert status == 400 and "nested more than 3" in body["error"]
    assert not await Application.objects.aexists()


@override_settings(SOLLOL_MAX_METADATA_BYTES=1000)
async def test_heartbeats_cannot_grow_metadata_past_the_limit_by_merging():
    assert (await post("/api/applications/register", app("a", one="x" * 600)))[0] == 200
    status, body = await post("/api/applications/heartbeat", app("a", two="y" * 600))
    assert status == 400 and "metadata is" in body["error"]
    stored = await Application.objects.aget(pk="a")
    assert set(stored.metadata) == {"one"}  # unchanged, still registered
    assert (await post("/api/applications/heartbeat", app("a", two="ok")))[0] == 200


@override_settings(
    SOLLOL_API_TOKENS=["token-1", "token-2"], SOLLOL_MAX_APPS_PER_TOKEN=2
)
async def test_each_token_may_register_a_bounded_number_of_applications():
    register = "/api/applications/register"
    assert (await post(register, app("a1"), "token-1"))[0] == 200
    assert (await post(register, app("a2"), "token-1"))[0] == 200
    status, body = await post(register, app("a3"), "token-1")
    assert status == 403 and "SOLLOL_MAX_APPS_PER_TOKEN" in body["error"]
    # Re-registering a known app is no new app; a heartbeat cannot sneak one in.
    assert (await post(register, app("a1"), "token-1"))[0] == 200
    status, _ = await post("/api/applications/heartbeat", app("a4"), "token-1")
    assert status == 403
    # Another token has its own quota; freeing a slot lets the first go on.
    assert (await post(register, app("b1"), "token-2"))[0] == 200
    assert (await post("/api/applications/a1/unregister", {}, "token-1"))[0] == 200
    assert (await post(register, app("a3"), "token-1"))[0] == 200
    owners = {a.app_id: a.owner async for a in Application.objects.all()}
    assert owners["a2"] == owners["a3"] != owners["b1"]
    assert "token-1" not in owners.values()  # a fingerprint, never the token

"""POST /api/applications/heartbeat on the lean lane, through the real ASGI app."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.test import override_settings
from django.utils import timezone

from activity.models import Event
from applications.models import Application
from applications.tests.factories import register
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

HOST = [(b"host", b"127.0.0.1:8080")]
HEARTBEAT = {
    "app_id": "app-1",
    "name": "My App",
    "router_type": "HybridRouter",
    "version": "1.0.0",
    "metadata": {"env": "prod"},
}


async def call(body, *, method="POST", headers=(), raw=None):
    payload = raw if raw is not None else json.dumps(body).encode()
    communicator = HttpCommunicator(
        application,
        method,
        "/api/applications/heartbeat",
        body=payload,
        headers=[*HOST, *headers],
    )
    response = await communicator.get_response(timeout=10)
    headers = dict(response["headers"])
    assert headers[b"content-type"] == b"application/json"
    return response["status"], json.loads(response["body"])


@database_sync_to_async
def stored(app_id="app-1") -> Application | None:
    return Application.objects.filter(pk=app_id).first()


@database_sync_to_async
def event_types() -> list[str]:
    return list(Event.objects.order_by("id").values_list("type", flat=True))


async def test_it_refreshes_the_app_and_merges_metadata():
    await database_sync_to_async(register)(
        "app-1", now=timezone.now(), metadata={"env": "prod"}
    )
    before = (await stored()).last_heartbeat
    status, body = await call({"app_id": "app-1", "metadata": {"requests": 7}})
    assert (status, body) == (
        200,
        {"status": "ok", "app_id": "app-1", "registered": False},
    )
    app = await stored()
    assert app.last_heartbeat > before
    assert app.metadata == {"env": "prod", "requests": 7}
    assert await event_types() == ["app_registered", "app_updated"]


async def test_it_registers_an_unknown_app_from_a_full_heartbeat():
    status, body = await call(HEARTBEAT)
    assert status == 200 and body["registered"] is True
    assert (await stored()).name == "My App"
    assert await event_types() == ["app_registered"]


async def test_it_tells_a_client_with_only_an_id_to_register():
    status, body = await call({"app_id": "ghost"})
    assert status == 404
    assert "register" in body["error"]
    assert await stored("ghost") is None


async def test_it_answers_every_heartbeat_of_a_burst_after_commit():
    await database_sync_to_async(register)("app-1", now=timezone.now())
    replies = await asyncio.gather(
        *(call({"app_id": "app-1", "metadata": {f"k{i}": i}}) for i in range(50))
    )
    assert all(status == 200 for status, _ in replies)
    # Each reply came after its commit, so every key is stored by now.
    assert (await stored()).metadata == {"env": "prod"} | {
        f"k{i}": i for i in range(50)
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1]",
        b"{}",
        b'{"app_id": 5}',
        b'{"app_id": "a b"}',
        b'{"app_id": "a", "metadata": [1]}',
        b'{"app_id": "a", "name": ""}',
        b'{"app_id": "a", "metadata": {"x": Infinity}}',
        b'{"app_id": "a", "name": "\\u0000"}',
        b"\xff\xfe",
        b"[" * 50000,
    ],
)
async def test_it_refuses_malformed_heartbeats_with_a_json_400(raw):
    status, body = await call(None, raw=raw)
    assert status == 400
    assert body["error"]


@override_settings(SOLLOL_MAX_BODY_BYTES=1000)
async def test_it_refuses_an_oversized_heartbeat():
    big = json.dumps({**HEARTBEAT, "metadata": {"x": "y" * 5000}}).encode()
    status, body = await call(None, raw=big)
    assert status == 413 and "larger than 1000 bytes" in body["error"]
    assert await stored() is None


@override_settings(SOLLOL_MAX_BODY_BYTES=1000)
async def test_it_refuses_an_oversized_chunked_body_on_django_routes_too():
    communicator = HttpCommunicator(
        application,
        "POST",
        "/api/applications/register",
        body=json.dumps({**HEARTBEAT, "metadata": {"x": "y" * 5000}}).encode(),
        headers=HOST,
    )
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 413
    assert await stored() is None


async def test_it_answers_other_methods_with_405():
    status, body = await call(None, method="GET", raw=b"")
    assert status == 405 and body["error"]


@override_settings(SOLLOL_API_TOKENS=["s3cret"])
async def test_it_needs_the_token_when_one_is_set():
    assert (await call(HEARTBEAT))[0] == 401
    assert (await call(HEARTBEAT, headers=[(b"authorization", b"Bearer no")]))[0] == 403
    ok = await call(HEARTBEAT, headers=[(b"authorization", b"Bearer s3cret")])
    assert ok[0] == 200


async def test_it_refuses_a_foreign_host():
    communicator = HttpCommunicator(
        application,
        "POST",
        "/api/applications/heartbeat",
        body=json.dumps(HEARTBEAT).encode(),
        headers=[(b"host", b"evil.example:8080")],
    )
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 400


async def register_call(body) -> tuple[int, dict]:
    communicator = HttpCommunicator(
        application,
        "POST",
        "/api/applications/register",
        body=json.dumps(body).encode(),
        headers=HOST,
    )
    response = await communicator.get_response(timeout=10)
    return response["status"], json.loads(response["body"])


async def test_a_fleet_registering_at_once_is_written_together_each_answered():
    """Registrations that arrive together share a batch: new ones, one said twice,
    and heartbeats of apps registered in that same moment."""
    bodies = [{"app_id": f"agent-{i}", "name": f"Agent {i}"} for i in range(60)]
    replies = await asyncio.gather(
        *(register_call(body) for body in bodies),
        register_call({"app_id": "agent-0", "name": "Agent 0", "version": "2"}),
    )
    assert all(status == 200 for status, _ in replies)
    created = [answer["created"] for _, answer in replies]
    assert created.count(True) == 60 and created.count(False) == 1
    beats = await asyncio.gather(*(call({"app_id": f"agent-{i}"}) for i in range(60)))
    assert all(status == 200 for status, _ in beats)
    types = await event_types()
    assert types.count("app_registered") == 60
    assert await database_sync_to_async(Application.objects.count)() == 60


@override_settings(SOLLOL_MAX_APPS_PER_TOKEN=3)
async def test_registrations_past_the_cap_are_refused_in_a_batch_and_the_rest_kept():
    replies = await asyncio.gather(
        *(register_call({"app_id": f"a-{i}", "name": "A"}) for i in range(5))
    )
    statuses = sorted(status for status, _ in replies)
    assert statuses == [200, 200, 200, 403, 403]
    refused = [answer for status, answer in replies if status == 403]
    assert all("SOLLOL_MAX_APPS_PER_TOKEN" in answer["error"] for answer in refused)
    assert await database_sync_to_async(Application.objects.count)() == 3

"""Samples: quiet heartbeats, pushed to viewers that ask for them, not as events."""

from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from applications import services as applications
from applications.tests.factories import register
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = [(b"origin", b"http://127.0.0.1:8080")]


async def viewer(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
    assert (await communicator.connect(timeout=5))[0]
    return communicator


async def test_heartbeats_that_change_nothing_still_reach_the_page_as_samples(
    monkeypatch,
):
    monkeypatch.setattr(applications, "_samples_published", None)
    now = timezone.now()
    await database_sync_to_async(register)("app-1", now=now - dt.timedelta(seconds=2))
    asked = await viewer("/ws/applications?samples=1")
    await database_sync_to_async(applications.record_heartbeats)(
        [applications.AppReport(app_id="app-1")], now=now
    )
    sent = await database_sync_to_async(applications.publish_heartbeat_samples)(now=now)
    assert sent == 1
    message = await asked.receive_json_from(timeout=5)
    assert message["type"] == "samples"
    assert message["apps"] == [["app-1", now.timestamp()]]
    # Within the interval nothing more is sent; after it, only what is new.
    later = now + dt.timedelta(seconds=1)
    assert (
        await database_sync_to_async(applications.publish_heartbeat_samples)(now=later)
        == 0
    )
    quiet = now + dt.timedelta(seconds=6)
    assert (
        await database_sync_to_async(applications.publish_heartbeat_samples)(now=quiet)
        == 0
    )
    assert await asked.receive_nothing(timeout=0.3)
    await asked.disconnect()

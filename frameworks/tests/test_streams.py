"""/ws/frameworks through the real ASGI app."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from frameworks import services
from frameworks.collectors import Collection
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
URL = "http://127.0.0.1:8787"


@database_sync_to_async
def record(status: str, error: str = "") -> None:
    services.record_collection(
        Collection("dask", status, URL, error=error), now=timezone.now()
    )


async def test_it_streams_status_changes_of_the_frameworks(settings):
    settings.SOLLOL_DASK_DASHBOARD_URL = URL
    ws = WebsocketCommunicator(
        application, "/ws/frameworks", headers=[(b"origin", b"http://127.0.0.1")]
    )
    connected, _ = await ws.connect(timeout=5)
    assert connected

    await record("active")
    await record("active")
    await record("unreachable", error="no complete answer within 2 s")

    first = await ws.receive_json_from(timeout=5)
    second = await ws.receive_json_from(timeout=5)
    assert first["type"] == second["type"] == "framework_status_change"
    assert (first["old_status"], first["new_status"]) == (None, "active")
    assert (second["old_status"], second["new_status"]) == ("active", "unreachable")
    assert second["framework"] == "dask"
    assert second["message"].startswith(f"Dask dashboard {URL}: active → unreachable")
    assert isinstance(second["timestamp"], float) and second["id"] > first["id"]
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()

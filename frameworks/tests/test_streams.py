"""/ws/frameworks through the real ASGI app."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from frameworks import services
from frameworks.collectors import Collection
from frameworks.tests.fakes import FakeDashboard
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
URL = "http://127.0.0.1:8787"
ORIGIN = [(b"origin", b"http://127.0.0.1")]


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


async def test_each_collection_sends_its_numbers_to_viewers_that_asked(settings):
    dask = FakeDashboard.dask()
    try:
        settings.SOLLOL_DASK_DASHBOARD_URL = dask.url
        settings.SOLLOL_RAY_DASHBOARD_URL = ""
        asked = WebsocketCommunicator(
            application, "/ws/frameworks?samples=1", headers=ORIGIN
        )
        plain = WebsocketCommunicator(application, "/ws/frameworks", headers=ORIGIN)
        assert (await asked.connect(timeout=5))[0] and (await plain.connect(5))[0]

        for _ in range(2):  # the second changes no status: a sample, no event
            await database_sync_to_async(services.collect_frameworks)(
                now=timezone.now()
            )
        received = [await asked.receive_json_from(timeout=5) for _ in range(3)]
    finally:
        dask.close()

    samples = [m for m in received if m["type"] == "samples"]
    assert len(samples) == 2 and all("id" not in m for m in samples)
    [numbers] = samples[-1]["frameworks"]
    assert numbers["framework"] == "dask" and numbers["status"] == "active"
    assert numbers["workers_total"] == 2
    assert numbers["resources"]["threads"] == 2
    assert numbers["tasks"]["erred"] == 1
    assert numbers["point"]["workers"] == 2
    assert numbers["point"]["t"] == numbers["collected_at"]
    assert "workers" not in numbers  # the lists come with a fetch, not every 5 s
    # Without ?samples=1 the stream's contract stays: events only, one per change.
    event = await plain.receive_json_from(timeout=5)
    assert event["type"] == "framework_status_change" and "id" in event
    assert await plain.receive_nothing(timeout=0.3)
    await asked.disconnect()
    await plain.disconnect()

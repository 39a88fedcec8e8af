"""/ws/applications through the real ASGI app: live events and ?since= replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.utils import timezone

from activity.models import Event
from applications import services
from applications.tests.factories import register
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = [(b"origin", b"http://127.0.0.1:8080")]


async def connect(path="/ws/applications", headers=ORIGIN) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def receive_all(communicator, count: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=5) for _ in range(count)]


@database_sync_to_async
def register_now(app_id: str, **fields):
    return register(app_id, now=timezone.now(), **fields)


@database_sync_to_async
def stream_ids() -> list[int]:
    return list(
        Event.objects.filter(stream="applications")
        .order_by("id")
        .values_list("id", flat=True)
    )


async def test_it_pushes_application_events_as_they_happen():
    ws = await connect()
    await register_now(
        "app-1", name="<script>x</script>", router_type="RayAdvancedRouter"
    )
    event = await ws.receive_json_from(timeout=5)
    assert event["type"] == "app_registered"
    assert event["app_id"] == "app-1"
    assert event["name"] == "<script>x</script>"  # data, escaped only where shown
    assert event["router_type"] == "RayAdvancedRouter"
    assert isinstance(event["id"], int) and isinstance(event["timestamp"], float)
    assert event["message"].startswith("📱 Application started")
    await database_sync_to_async(services.unregister_application)(
        "app-1", now=timezone.now()
    )
    assert (await ws.receive_json_from(timeout=5))["type"] == "app_unregistered"
    await ws.disconnect()


async def test_it_starts_live_without_replaying_history():
    await register_now("old")
    ws = await connect()
    await register_now("new")
    assert (await ws.receive_json_from(timeout=5))["app_id"] == "new"
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_it_replays_what_a_client_missed_then_goes_live():
    for i in range(5):
        await register_now(f"app-{i}")
    ids = await stream_ids()
    ws = await connect(f"/ws/applications?since={ids[1]}")
    replayed = await receive_all(ws, 3)
    assert [e["id"] for e in replayed] == ids[2:]
    await register_now("app-5")
    assert (await ws.receive_json_from(timeout=5))["app_id"] == "app-5"
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def receive_events(communicator, count: int) -> list[dict]:
    """Events until `count` of them, taken out of batch messages where batched."""
    events: list[dict] = []
    while len(events) < count:
        message = await communicator.receive_json_from(timeout=5)
        events.extend(message["events"] if message["type"] == "batch" else [message])
    return events


@pytest.mark.parametrize("batch", ["", "&batch=1"])
async def test_it_loses_and_repeats_nothing_when_events_arrive_during_replay(batch):
    for i in range(600):  # more than one replay batch
        await register_now(f"before-{i:03}")
    stop = threading.Event()

    def produce():
        try:
            i = 0
            while not stop.is_set() and i < 300:
                register(f"during-{i:03}", now=timezone.now())
                i += 1
        finally:
            connection.close()

    producer = threading.Thread(target=produce)
    producer.start()
    ws = await connect(f"/ws/applications?since=0{batch}")
    await asyncio.to_thread(producer.join)
    expected = await stream_ids()
    received = await receive_events(ws, len(expected))
    assert [e["id"] for e in received] == expected
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "9" * 20])
async def test_it_refuses_a_malformed_since(since):
    ws = await connect(f"/ws/applications?since={since}")
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error" and "since" in error["message"]
    assert (await ws.receive_output(timeout=5))["code"] == 4400


async def test_it_refuses_a_browser_socket_from_another_site():
    communicator = WebsocketCommunicator(
        application, "/ws/applications", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_it_lets_scripts_without_an_origin_connect():
    ws = await connect(headers=[])
    await register_now("app-1")
    assert (await ws.receive_json_from(timeout=5))["type"] == "app_registered"
    await ws.disconnect()


async def test_heartbeats_that_change_nothing_still_reach_the_page_as_samples(
    monkeypatch,
):
    monkeypatch.setattr(services, "_samples_published", None)
    now = timezone.now()
    await database_sync_to_async(register)("app-1", now=now - dt.timedelta(seconds=2))
    asked = await connect("/ws/applications?samples=1")
    await database_sync_to_async(services.record_heartbeats)(
        [services.AppReport(app_id="app-1")], now=now
    )
    sent = await database_sync_to_async(services.publish_heartbeat_samples)(now=now)
    assert sent == 1
    message = await asked.receive_json_from(timeout=5)
    assert message["type"] == "samples"
    assert message["apps"] == [["app-1", now.timestamp()]]
    # Within the interval nothing more is sent; after it, only what is new.
    later = now + dt.timedelta(seconds=1)
    assert (
        await database_sync_to_async(services.publish_heartbeat_samples)(now=later) == 0
    )
    quiet = now + dt.timedelta(seconds=6)
    assert (
        await database_sync_to_async(services.publish_heartbeat_samples)(now=quiet) == 0
    )
    assert await asked.receive_nothing(timeout=0.3)
    await asked.disconnect()


async def test_batch_mode_sends_what_arrives_together_as_one_message_in_id_order():
    for i in range(3):
        await register_now(f"early-{i}")
    ids = await stream_ids()
    ws = await connect(f"/ws/applications?since={ids[0]}&batch=1")
    # The replay: what the client missed, in one message.
    replayed = await ws.receive_json_from(timeout=5)
    assert replayed["type"] == "batch"
    assert [e["id"] for e in replayed["events"]] == ids[1:]
    assert replayed["id"] == ids[-1] and replayed["count"] == 2
    # Live: four registrations (four transactions, four announcements) within
    # the batch window arrive together, each event as it would come alone.

    @database_sync_to_async
    def register_four():
        for i in range(4):
            register(f"late-{i}", now=timezone.now(), name=f"<b>late {i}</b>")

    await register_four()
    messages, events = [], []
    while len(events) < 4:
        messages.append(await ws.receive_json_from(timeout=5))
        events.extend(messages[-1]["events"])
    assert {m["type"] for m in messages} == {"batch"}
    assert len(messages) <= 2  # one, unless the window closed mid-way
    assert [e["app_id"] for e in events] == [f"late-{i}" for i in range(4)]
    assert [e["id"] for e in events] == (await stream_ids())[3:]
    assert events[0]["name"] == "<b>late 0</b>"
    assert events[0]["type"] == "app_registered"
    assert await ws.receive_nothing(timeout=0.4)
    await ws.disconnect()

"""Log lines: ingest, retention, GET /api/logs, /ws/logs fan-out, filters and replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.utils import timezone

from activity import capture, logs, tail
from activity.models import LogRecord
from core.lean import writer as lean_writer
from sollol_site.asgi import application

HOST = [(b"host", b"127.0.0.1:8080")]
ORIGIN = [(b"origin", b"http://127.0.0.1:8080")]


def line(message: str, level="INFO", app_id="app-1", **extra) -> dict:
    return {
        "message": message,
        "level": level,
        "app_id": app_id,
        "logger": "x",
        **extra,
    }


async def post_logs(body, headers=()) -> tuple[int, dict, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    communicator = HttpCommunicator(
        application, "POST", "/api/logs", body=raw, headers=[*HOST, *headers]
    )
    response = await communicator.get_response(timeout=10)
    return response["status"], json.loads(response["body"]), dict(response["headers"])


async def viewer(query: str = "") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/logs{query}", headers=list(ORIGIN)
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def received(communicator, count: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=5) for _ in range(count)]


# --- services and REST --------------------------------------------------------------


def test_it_reads_levels_by_name_or_number():
    assert logs.parse_level("warn") == ("WARNING", 30)
    assert logs.parse_level(40) == ("ERROR", 40)
    assert logs.parse_level(25) == ("LEVEL25", 25)
    for bad in ("LOUD", True, -1, 3.5, None):
        with pytest.raises(logs.PayloadError):
            logs.parse_level(bad)


@pytest.mark.django_db
def test_it_keeps_logs_within_age_and_count():
    now = timezone.now()
    old = logs.parse_logs(
        [line("old", timestamp=(now - dt.timedelta(days=9)).timestamp())]
    )
    logs.record_logs(old, now=now)
    logs.record_logs(logs.parse_logs([line(f"l{i}") for i in range(10)]), now=now)
    assert logs.prune_logs(now=now, max_age=86400, max_count=4) == 7
    assert list(LogRecord.objects.values_list("message", flat=True)) == [
        "l6",
        "l7",
        "l8",
        "l9",
    ]


@pytest.mark.django_db
def test_get_lists_the_newest_lines_filtered(client):
    now = timezone.now()
    logs.record_logs(
        logs.parse_logs(
            [
                line("starting", "INFO", "a"),
                line("disk almost full", "WARNING", "a"),
                line("node died", "ERROR", "b"),
                line("retrying", "DEBUG", "b"),
            ]
        ),
        now=now,
    )
    every = client.get("/api/logs").json()
    assert [entry["message"] for entry in every["logs"]] == [
        "starting",
        "disk almost full",
        "node died",
        "retrying",
    ]
    first = every["logs"][0]
    assert first["type"] == "log" and first["level"] == "INFO"
    assert first["timestamp"] == pytest.approx(now.timestamp())
    warnings = client.get("/api/logs?level=WARNING").json()["logs"]
    assert [e["message"] for e in warnings] == ["disk almost full", "node died"]
    only_b = client.get("/api/logs?app_id=b&level=debug").json()["logs"]
    assert [e["message"] for e in only_b] == ["node died", "retrying"]
    found = client.get("/api/logs?q=DISK").json()["logs"]
    assert [e["message"] for e in found] == ["disk almost full"]
    after = client.get(f"/api/logs?since={first['id']}&limit=2").json()
    assert [e["message"] for e in after["logs"]] == ["disk almost full", "node died"]
    assert after["last_id"] == after["logs"][-1]["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["level=LOUD", "limit=0", "limit=abc", "since=-1", "limit=100000"]
)
def test_get_refuses_bad_queries_with_a_json_400(client, query):
    response = client.get(f"/api/logs?{query}")
    assert response.status_code == 400 and response.json()["error"]


# --- lean ingest ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_it_ingests_batches_of_records():
    status, body, _ = await post_logs(
        {
            "app_id": "router-1",
            "records": [
                {"message": "hello", "level": "info", "timestamp": 1764150000.5},
                {"message": "bad", "level": 40, "app_id": "other", "extra": {"k": [1]}},
            ],
        }
    )
    assert (status, body) == (200, {"status": "ok", "accepted": 2})
    rows = [r async for r in LogRecord.objects.order_by("id")]
    assert [(r.app_id, r.level, r.message) for r in rows] == [
        ("router-1", "INFO", "hello"),
        ("other", "ERROR", "bad"),
    ]
    assert rows[0].timestamp.timestamp() == 1764150000.5
    assert rows[1].extra == {"k": [1]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"42",
        b'[{"level": "INFO"}]',
        b'[{"message": 5}]',
        b'[{"message": "x", "level": "LOUD"}]',
        b'[{"message": "x", "extra": [1]}]',
        b'[{"message": "x", "timestamp": "yesterday"}]',
        b'[{"message": "x\\ud800"}]',
        json.dumps([{"message": "x"}] * (logs.MAX_LINES_PER_BATCH + 1)).encode(),
    ],
)
async def test_it_refuses_bad_batches_whole(body):
    status, answer, _ = await post_logs(body)
    assert status == 400 and answer["error"]
    assert not await LogRecord.objects.aexists()


@pytest.mark.django_db(transaction=True)
async def test_a_flood_is_refused_with_503_and_retry_after_not_queued(monkeypatch):
    writer = lean_writer.get_writer(
        "logs", lambda items, now: time.sleep(0.5) or [0] * len(items), 1
    )
    first = asyncio.ensure_future(post_logs([line("one")]))
    await asyncio.sleep(0.1)  # the writer is busy with the first batch
    second = asyncio.ensure_future(post_logs([line("two")]))
    await asyncio.sleep(0.05)
    status, body, headers = await post_logs([line("three")])  # one already waits
    assert status == 503 and "try again" in body["error"]
    assert headers[b"retry-after"] == b"1"
    assert (await first)[0] == 200 and (await second)[0] == 200
    assert writer.max_pending == 1


# --- /ws/logs ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_every_viewer_gets_every_line_in_order():
    viewers = [await viewer() for _ in range(5)]
    for i in range(3):
        await post_logs([line(f"batch {i} line {j}") for j in range(40)])
    expected = [f"batch {i} line {j}" for i in range(3) for j in range(40)]
    for communicator in viewers:
        messages = await received(communicator, 120)
        assert [m["message"] for m in messages] == expected
        assert all(m["type"] == "log" and m["app_id"] == "app-1" for m in messages)
        ids = [m["id"] for m in messages]
        assert ids == sorted(ids)
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_viewers_filter_by_level_app_and_text_on_the_server():
    warnings = await viewer("?level=WARNING")
    app_b = await viewer("?app_id=b")
    disk = await viewer("?q=disk")
    await post_logs(
        [
            line("starting", "INFO", "a"),
            line("disk almost full", "WARNING", "a"),
            line("node died", "ERROR", "b"),
        ]
    )
    assert [m["message"] for m in await received(warnings, 2)] == [
        "disk almost full",
        "node died",
    ]
    assert [m["message"] for m in await received(app_b, 1)] == ["node died"]
    assert [m["message"] for m in await received(disk, 1)] == ["disk almost full"]
    for communicator in (warnings, app_b, disk):
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_since_replays_from_the_database_then_from_the_shared_tail(monkeypatch):
    # A tiny tail, so that replay must come from the database for older lines.
    monkeypatch.setattr(tail, "FETCH", 7)
    live = await viewer()
    tail.get_tail().capacity = 5
    await post_logs([line(f"old {i}") for i in range(30)])
    messages = await received(live, 30)
    first_id = messages[0]["id"]
    assert tail.get_tail().start > first_id  # the oldest lines left memory
    resumed = await viewer(f"?since={first_id + 2}&level=INFO")
    replayed = await received(resumed, 27)
    assert [m["message"] for m in replayed] == [f"old {i}" for i in range(3, 30)]
    await post_logs([line("new")])
    assert (await received(resumed, 1))[0]["message"] == "new"
    assert (await received(live, 1))[0]["message"] == "new"
    assert await resumed.receive_nothing(timeout=0.2)
    await resumed.disconnect()
    await live.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_batch_viewers_get_lines_that_arrive_together_in_one_message():
    batched = await viewer("?batch=1")
    await post_logs([line(f"l{i}") for i in range(50)])
    lines = []
    while len(lines) < 50:
        message = await batched.receive_json_from(timeout=5)
        assert message["type"] == "log_batch"
        assert message["count"] == len(message["lines"])
        assert message["id"] == message["lines"][-1]["id"]
        lines.extend(message["lines"])
    assert [m["message"] for m in lines] == [f"l{i}" for i in range(50)]
    await batched.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query", ["?since=abc", "?level=LOUD", "?since=-4"])
async def test_a_malformed_viewer_query_is_told_and_closed(query):
    communicator = WebsocketCommunicator(
        application, f"/ws/logs{query}", headers=list(ORIGIN)
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert (await communicator.receive_output(timeout=5))["code"] == 4400


# --- the dashboard's own logs --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_dashboards_own_records_are_stored_without_recursing():
    handler = capture.DashboardLogHandler(logging.INFO, max_queue=3)
    log = logging.getLogger("sollol.test.capture")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("probe of %s failed \x00 %s", "127.0.0.2", "\ud800")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("cycle crashed")
        log.debug("not at INFO")
        deadline = time.monotonic() + 5
        while handler.written < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        log.removeHandler(handler)
        handler.close()
    rows = list(LogRecord.objects.order_by("id"))
    assert [(r.app_id, r.level, r.logger) for r in rows] == [
        (logs.DASHBOARD_APP_ID, "WARNING", "sollol.test.capture"),
        (logs.DASHBOARD_APP_ID, "ERROR", "sollol.test.capture"),
    ]
    assert rows[0].message == "probe of 127.0.0.2 failed \\x00 \\ud800"
    assert "ValueError: boom" in rows[1].message
    # A flood is dropped and counted, not queued without bound.
    stalled = capture.DashboardLogHandler(logging.INFO, max_queue=3)
    stalled._thread = object()  # as if its writer were stuck
    for i in range(10):
        stalled.emit(
            logging.makeLogRecord({"name": "x", "msg": f"m{i}", "levelno": 20})
        )
    assert stalled.dropped == 7

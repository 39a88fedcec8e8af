"""Log lines: ingest (JSON and OTLP), retention, GET /api/logs, /ws/logs fan-out,
filters and replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import logging
import time
import zlib

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.utils import timezone
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as ProtoLogRecord
from opentelemetry.proto.logs.v1.logs_pb2 import (
    ResourceLogs,
    ScopeLogs,
    SeverityNumber,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from activity import capture, logs, tail
from activity.models import LogRecord
from activity.tests.test_traces import attribute, error_of
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


# --- OTLP/HTTP: POST /v1/logs --------------------------------------------------------

NS = 1_764_150_000 * 10**9  # Unix nanoseconds
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
PROTOBUF = "application/x-protobuf"


def otlp_request(*records, service: str | None = "checkout", scope="app.payments"):
    """Return an ExportLogsServiceRequest in OTLP JSON: one resource, one scope."""
    resource = {}
    if service is not None:
        resource["attributes"] = [
            {"key": "service.name", "value": {"stringValue": service}}
        ]
    return {
        "resourceLogs": [
            {
                "resource": resource,
                "scopeLogs": [{"scope": {"name": scope}, "logRecords": list(records)}],
            }
        ]
    }


def otlp_record(message: str, **fields) -> dict:
    return {
        "timeUnixNano": str(NS),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": message},
        **fields,
    }


def post_otlp(client, body, content_type="application/json", **headers):
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    return client.post("/v1/logs", data=body, content_type=content_type, **headers)


def stored(client, query: str = "") -> list[dict]:
    response = client.get(f"/api/logs{query}")
    assert response.status_code == 200, response.content
    return response.json()["logs"]


@pytest.mark.django_db(transaction=True)
def test_it_takes_an_otlp_json_log_export(client):
    request = otlp_request(
        otlp_record(
            "card declined",
            severityNumber=13,
            severityText="WARN",
            traceId=TRACE_ID,
            spanId=SPAN_ID,
            attributes=[
                {"key": "order.id", "value": {"intValue": "9007199254740993"}},
                {"key": "retry", "value": {"boolValue": True}},
                {
                    "key": "cart",
                    "value": {
                        "kvlistValue": {
                            "values": [{"key": "items", "value": {"intValue": 3}}]
                        }
                    },
                },
            ],
        ),
        otlp_record(
            "",
            severityNumber="SEVERITY_NUMBER_ERROR3",
            severityText=None,
            body={
                "kvlistValue": {
                    "values": [{"key": "event", "value": {"stringValue": "refund"}}]
                }
            },
            timeUnixNano="0",  # unknown: when the collector saw it
            observedTimeUnixNano=NS + 5 * 10**9,
        ),
        # No number: the text says, or INFO (and the text is kept) when it cannot.
        otlp_record("cache miss", severityNumber=None, severityText="debug"),
        otlp_record("audit", severityNumber=None, severityText="NOTICE"),
        otlp_record("fatal", severityNumber=24, severityText="FATAL4"),
    )
    response = post_otlp(client, request)
    assert response.status_code == 200, response.content
    assert response.json() == {}

    logs_ = stored(client)
    assert [(e["app_id"], e["logger"], e["level"], e["message"]) for e in logs_] == [
        ("checkout", "app.payments", "WARNING", "card declined"),
        ("checkout", "app.payments", "ERROR", '{"event": "refund"}'),
        ("checkout", "app.payments", "DEBUG", "cache miss"),
        ("checkout", "app.payments", "INFO", "audit"),
        ("checkout", "app.payments", "CRITICAL", "fatal"),
    ]
    declined, refund, _, audit, _ = logs_
    assert declined["timestamp"] == NS / 1e9
    assert refund["timestamp"] == NS / 1e9 + 5
    assert declined["extra"] == {
        "order.id": 9007199254740993,
        "retry": True,
        "cart": {"items": 3},
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
    }
    assert refund["extra"] == {}
    assert audit["extra"] == {"severity_text": "NOTICE"}
    # The filters of the logs API work on them as on any line.
    assert [e["message"] for e in stored(client, "?level=ERROR&app_id=checkout")] == [
        '{"event": "refund"}',
        "fatal",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_record_without_a_time_or_a_service_is_stamped_and_named_as_otel_does(
    client,
):
    before = timezone.now().timestamp()
    record = {"body": {"stringValue": "bare"}}
    response = post_otlp(client, otlp_request(record, service=None, scope=None))
    assert response.status_code == 200 and response.json() == {}
    [entry] = stored(client)
    assert entry["app_id"] == "unknown_service"  # what SDKs call a nameless one
    assert (entry["level"], entry["logger"], entry["message"]) == ("INFO", "", "bare")
    assert before <= entry["timestamp"] <= timezone.now().timestamp()


@pytest.mark.django_db(transaction=True)
def test_it_answers_partial_success_for_bad_otlp_log_records(client):
    too_deep = {"stringValue": "x"}
    for _ in range(6):  # an AnyValue may nest deeper than extra may
        too_deep = {"kvlistValue": {"values": [{"key": "k", "value": too_deep}]}}
    request = otlp_request(
        otlp_record("kept"),
        otlp_record("bad trace", traceId="zz" * 16),
        otlp_record("ancient", timeUnixNano="5"),
        otlp_record("deep", attributes=[{"key": "deep", "value": too_deep}]),
        None,
        otlp_record("\ud800"),
        otlp_record("unknown severity", severityNumber="SEVERITY_NUMBER_LOUD"),
    )
    response = post_otlp(client, request)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == 6
    message = partial["errorMessage"]
    assert "resourceLogs[0].scopeLogs[0].logRecords[1]: traceId" in message
    assert "not a plausible time" in message
    assert "nested more than 6 levels" in message
    assert message.endswith("; and 3 more")
    assert [e["message"] for e in stored(client)] == ["kept"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b" ", "not valid JSON"),
        (b"<xml/>", "not valid JSON"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [NaN]}]}]}', "NaN"),
        (b"[]", "ExportLogsServiceRequest"),
        (b'{"resourceLogs": {}}', "resourceLogs must be a list"),
        (b'{"resourceLogs": [5]}', "resourceLogs[0] must be an object"),
        (b'{"resourceLogs": [{"scopeLogs": 5}]}', "scopeLogs must be a list"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": {}}]}]}', "logRecords"),
        (
            b'{"resourceLogs": [{"resource": {"attributes": [{"key": "service.name",'
            b' "value": {"stringValue": 5}}]}}]}',
            "stringValue must be a string",
        ),
        (
            json.dumps(
                otlp_request(*[{} for _ in range(logs.MAX_LINES_PER_BATCH + 1)])
            ).encode(),
            f"at most {logs.MAX_LINES_PER_BATCH} logRecords per request",
        ),
    ],
)
def test_it_refuses_malformed_otlp_log_json_with_a_json_400(client, body, complaint):
    response = post_otlp(client, body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert not LogRecord.objects.exists()


@pytest.mark.django_db
def test_it_refuses_logs_that_are_neither_json_nor_protobuf(client):
    response = post_otlp(client, b"x", content_type="text/plain")
    assert response.status_code == 415
    assert PROTOBUF in response.json()["error"]
    response = client.get("/v1/logs")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "POST" in response.json()["error"]


def proto_request(*records: ProtoLogRecord, service="inference", scope="llm") -> bytes:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[attribute("service.name", string_value=service)]
                ),
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name=scope), log_records=records
                    )
                ],
            )
        ]
    ).SerializeToString()


@pytest.mark.django_db(transaction=True)
def test_it_takes_an_otlp_protobuf_log_export(client):
    body = proto_request(
        ProtoLogRecord(
            time_unix_nano=NS,
            severity_number=SeverityNumber.SEVERITY_NUMBER_INFO2,
            severity_text="INFO",
            body=AnyValue(string_value="model loaded"),
            trace_id=bytes.fromhex(TRACE_ID),
            span_id=bytes.fromhex(SPAN_ID),
            attributes=[
                attribute("gen_ai.request.model", string_value="llama3.2:3b"),
                attribute("vram", double_value=float("inf")),
                attribute("raw", bytes_value=b"\x00\x01"),
            ],
        ),
        ProtoLogRecord(
            observed_time_unix_nano=NS + 10**9,
            severity_number=SeverityNumber.SEVERITY_NUMBER_TRACE,
            body=AnyValue(int_value=42),
        ),
    )
    response = post_otlp(client, body, content_type=PROTOBUF)
    assert response.status_code == 200
    assert response["Content-Type"] == PROTOBUF
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")

    loaded, traced = stored(client)
    assert (loaded["app_id"], loaded["logger"]) == ("inference", "llm")
    assert (loaded["level"], loaded["message"]) == ("INFO", "model loaded")
    assert loaded["timestamp"] == NS / 1e9
    assert loaded["extra"] == {
        "gen_ai.request.model": "llama3.2:3b",
        "vram": "Infinity",
        "raw": "AAE=",
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
    }
    assert (traced["level"], traced["message"]) == ("TRACE", "42")
    assert traced["timestamp"] == NS / 1e9 + 1


@pytest.mark.django_db(transaction=True)
def test_it_counts_bad_protobuf_log_records_as_rejected(client):
    body = proto_request(
        ProtoLogRecord(trace_id=b"\x01\x02\x03", body=AnyValue(string_value="bad")),
        ProtoLogRecord(time_unix_nano=NS, body=AnyValue(string_value="good")),
        ProtoLogRecord(severity_text="nul \x00", body=AnyValue(string_value="bad")),
    )
    response = post_otlp(client, body, content_type=PROTOBUF)
    assert response.status_code == 200
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_log_records == 2
    message = answer.partial_success.error_message
    assert "resource_logs[0].scope_logs[0].log_records[0]" in message
    assert "trace_id must be 16 bytes" in message and "NUL" in message
    assert [e["message"] for e in stored(client)] == ["good"]


@pytest.mark.django_db
def test_it_refuses_a_log_body_that_is_not_protobuf_in_protobuf(client):
    response = post_otlp(client, b"\xff\xff\xff\xff not protobuf", PROTOBUF)
    assert response.status_code == 400
    assert response["Content-Type"] == PROTOBUF
    status = RpcStatus.FromString(response.content)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "ExportLogsServiceRequest" in status.message


@pytest.mark.django_db(transaction=True)
def test_it_takes_gzipped_log_exports_in_both_encodings(client):
    as_json = gzip.compress(json.dumps(otlp_request(otlp_record("zipped"))).encode())
    response = post_otlp(client, as_json, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200 and response.json() == {}
    as_proto = gzip.compress(
        proto_request(ProtoLogRecord(body=AnyValue(string_value="zipped too")))
    )
    response = post_otlp(client, as_proto, PROTOBUF, HTTP_CONTENT_ENCODING="GZIP")
    assert response.status_code == 200 and response.content == b""
    assert [e["message"] for e in stored(client)] == ["zipped", "zipped too"]


@pytest.mark.django_db
def test_it_refuses_log_bombs_and_broken_or_unknown_compression(client, settings):
    settings.SOLLOL_MAX_DECOMPRESSED_BYTES = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(50))
    bomb += compressor.flush()
    for content_type in ("application/json", PROTOBUF):
        response = post_otlp(client, bomb, content_type, HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 413
        assert "inflates" in error_of(response)
    whole = gzip.compress(b"{}")
    for broken in (whole[:-6], b"not gzip at all"):
        response = post_otlp(client, broken, HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 400 and "gzip" in response.json()["error"]
    response = post_otlp(client, b"{}", HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415 and "br" in response.json()["error"]
    response = post_otlp(client, b"{}", PROTOBUF, HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415
    assert RpcStatus.FromString(response.content).code == 3
    assert not LogRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_protects_otlp_log_writes_with_the_token(client, settings):
    settings.SOLLOL_API_TOKENS = ["s3cret"]
    proto = proto_request(ProtoLogRecord(body=AnyValue(string_value="secret")))

    def writes(**headers):
        return [
            post_otlp(client, otlp_request(otlp_record("secret")), **headers),
            post_otlp(client, proto, PROTOBUF, **headers),
        ]

    for response in writes():
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
        assert "Bearer" in error_of(response)
    assert RpcStatus.FromString(writes()[1].content).code == 16  # UNAUTHENTICATED
    for response in writes(HTTP_AUTHORIZATION="Bearer wrong"):
        assert response.status_code == 403
        assert "not valid" in error_of(response)
    assert not LogRecord.objects.exists()
    for response in writes(HTTP_AUTHORIZATION="Bearer s3cret"):
        assert response.status_code == 200
    assert LogRecord.objects.count() == 2


async def asgi_post_otlp(body: bytes, content_type=b"application/json") -> dict:
    communicator = HttpCommunicator(
        application,
        "POST",
        "/v1/logs",
        body=body,
        headers=[*HOST, (b"content-type", content_type)],
    )
    return await communicator.get_response(timeout=10)


@pytest.mark.django_db(transaction=True)
async def test_otlp_log_lines_reach_viewers_as_posted_lines_do():
    live = await viewer()
    posted = await post_logs([line("native", app_id="router-1")])
    assert posted[0] == 200
    response = await asgi_post_otlp(
        proto_request(
            ProtoLogRecord(
                time_unix_nano=NS,
                severity_number=SeverityNumber.SEVERITY_NUMBER_ERROR,
                body=AnyValue(string_value="from otel"),
            )
        ),
        PROTOBUF.encode(),
    )
    assert response["status"] == 200, response["body"]
    native, otel = await received(live, 2)
    assert otel["id"] > native["id"]
    assert set(otel) == set(native)  # one shape, whichever door a line came in
    assert (otel["type"], otel["app_id"], otel["logger"]) == ("log", "inference", "llm")
    assert (otel["level"], otel["message"]) == ("ERROR", "from otel")
    assert await live.receive_nothing(timeout=0.2)
    await live.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_otlp_logs_have_the_trace_exports_body_limit():
    # An SDK's batch of 512 records is over /api/logs' 256 KiB, and is taken.
    batch = [otlp_record("x" * 600) for _ in range(512)]
    response = await asgi_post_otlp(json.dumps(otlp_request(*batch)).encode())
    assert response["status"] == 200, response["body"]
    big = json.dumps(otlp_request(otlp_record("x" * (4 * 1024 * 1024)))).encode()
    response = await asgi_post_otlp(big)
    assert response["status"] == 413
    assert "larger than" in json.loads(response["body"])["error"]


@pytest.mark.django_db(transaction=True)
async def test_otlp_logs_share_the_writers_queue():
    writer = lean_writer.get_writer(
        "logs", lambda items, now: time.sleep(0.5) or [0] * len(items), 1
    )
    body = json.dumps(otlp_request(otlp_record("one"))).encode()
    first = asyncio.ensure_future(asgi_post_otlp(body))
    await asyncio.sleep(0.1)  # the writer is busy with the first batch
    second = asyncio.ensure_future(post_logs([line("two")]))
    await asyncio.sleep(0.05)
    response = await asgi_post_otlp(body)  # one already waits, from /api/logs
    assert response["status"] == 503
    assert "try again" in json.loads(response["body"])["error"]
    headers = {name.lower(): value for name, value in response["headers"]}
    assert headers[b"retry-after"] == b"1"
    assert (await first)["status"] == 200 and (await second)[0] == 200
    assert writer.max_pending == 1

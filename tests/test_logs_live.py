"""Logs against a real dashboard: the OpenTelemetry SDK's OTLP/HTTP log exporter,
OTLP JSON (which the Python SDK does not send) posted as a Collector would, and
/ws/logs viewers on each server."""

from __future__ import annotations

import gzip
import json
import time

import pytest
import requests
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from websockets.sync.client import connect

pytestmark = pytest.mark.live

APP = "otel-logs-app"


def get_logs(server, app_id: str = APP) -> list[dict]:
    """Return the lines of one application, as the logs API lists them."""
    response = requests.get(
        f"{server.url}/api/logs", params={"app_id": app_id}, timeout=2
    )
    response.raise_for_status()
    return response.json()["logs"]


def sdk_logger(processor):
    """Return the SDK's provider and a logger of it that sends through processor."""
    provider = LoggerProvider(
        resource=Resource.create({"service.name": APP, "team": "payments"})
    )
    provider.add_log_record_processor(processor)
    return provider, provider.get_logger("tests.otel.payments")


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_it_lists_log_records_the_opentelemetry_sdk_exported(
    live_dashboard, compression
):
    exporter = OTLPLogExporter(
        endpoint=f"{live_dashboard.url}/v1/logs", compression=compression, timeout=5
    )
    provider, logger = sdk_logger(BatchLogRecordProcessor(exporter))
    tracer = TracerProvider().get_tracer("tests.logs")  # a span for context only
    sent_from = time.time()
    with tracer.start_as_current_span("charge") as span:
        logger.emit(
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="order 42 paid",
            attributes={"order.id": 42, "currency": "EUR"},
        )
        logger.emit(severity_number=SeverityNumber.WARN2, body="card declined")
        try:
            raise ValueError("gateway timeout")
        except ValueError as exc:
            logger.emit(
                severity_number=SeverityNumber.ERROR,
                body="charge failed",
                exception=exc,
            )
    logger.emit(
        severity_number=SeverityNumber.DEBUG, body={"event": "retry", "attempt": 2}
    )
    provider.shutdown()  # exports what the batch holds
    sent_until = time.time()

    lines = get_logs(live_dashboard)
    assert [(e["level"], e["message"]) for e in lines] == [
        ("INFO", "order 42 paid"),
        ("WARNING", "card declined"),
        ("ERROR", "charge failed"),
        ("DEBUG", '{"event": "retry", "attempt": 2}'),
    ], live_dashboard.log()
    assert {(e["app_id"], e["logger"], e["type"]) for e in lines} == {
        (APP, "tests.otel.payments", "log")
    }
    for entry in lines:  # the SDK sends when it saw them (observedTimeUnixNano)
        assert sent_from - 1 <= entry["timestamp"] <= sent_until + 1
    paid, declined, failed, retry = (e["extra"] for e in lines)
    context = span.get_span_context()
    for extra in (paid, declined, failed):
        assert extra["trace_id"] == format(context.trace_id, "032x")
        assert extra["span_id"] == format(context.span_id, "016x")
    assert retry == {}  # outside the span: no trace
    assert paid == {
        "order.id": 42,
        "currency": "EUR",
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
    assert failed["exception.type"] == "ValueError"
    assert failed["exception.message"] == "gateway timeout"
    # Only the level and above, as for any line.
    errors = requests.get(
        f"{live_dashboard.url}/api/logs",
        params={"app_id": APP, "level": "ERROR"},
        timeout=2,
    ).json()["logs"]
    assert [e["message"] for e in errors] == ["charge failed"]


def test_it_refuses_an_sdk_log_export_without_the_token(live_server_factory):
    server = live_server_factory(SOLLOL_API_TOKEN="s3cret")
    server.start()
    memory = InMemoryLogRecordExporter()
    provider, logger = sdk_logger(SimpleLogRecordProcessor(memory))
    logger.emit(severity_number=SeverityNumber.FATAL, body="disk full")
    provider.shutdown()

    def export(**headers: str) -> LogRecordExportResult:
        exporter = OTLPLogExporter(
            endpoint=f"{server.url}/v1/logs", headers=headers, timeout=5
        )
        try:
            return exporter.export(memory.get_finished_logs())
        finally:
            exporter.shutdown()

    assert export() is LogRecordExportResult.FAILURE
    assert get_logs(server) == []
    assert export(Authorization="Bearer s3cret") is LogRecordExportResult.SUCCESS
    [line] = get_logs(server)
    assert (line["level"], line["message"]) == ("CRITICAL", "disk full")


def test_it_lists_log_records_posted_as_otlp_json(live_dashboard):
    sent = time.time_ns()
    request = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "collector"}}
                    ]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "filelog"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(sent),
                                "severityNumber": "SEVERITY_NUMBER_WARN",
                                "severityText": "WARN",
                                "body": {"stringValue": "slow node 127.0.0.2"},
                            },
                            {"severityNumber": 17, "body": {"intValue": "500"}},
                            {"timeUnixNano": "5", "body": {"stringValue": "ancient"}},
                        ],
                    }
                ],
            }
        ]
    }
    response = requests.post(
        f"{live_dashboard.url}/v1/logs",
        data=gzip.compress(json.dumps(request).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == 1
    assert (
        "logRecords[2]: timeUnixNano is not a plausible time"
        in (partial["errorMessage"])
    )
    slow, status = get_logs(live_dashboard, "collector")
    assert (slow["level"], slow["message"], slow["logger"]) == (
        "WARNING",
        "slow node 127.0.0.2",
        "filelog",
    )
    assert slow["timestamp"] == pytest.approx(sent / 1e9, abs=1e-5)
    assert (status["level"], status["message"]) == ("ERROR", "500")


def test_it_refuses_oversized_and_unknown_log_bodies_over_http(live_dashboard):
    url = f"{live_dashboard.url}/v1/logs"
    too_big = requests.post(
        url,
        data=b"\0" * (4 * 1024 * 1024 + 1),  # over SOLLOL_MAX_TRACE_BODY_BYTES
        headers={"Content-Type": "application/x-protobuf"},
        timeout=5,
    )
    assert too_big.status_code == 413 and "larger than" in too_big.json()["error"]
    brotli = requests.post(
        url,
        data=b"{}",
        headers={"Content-Type": "application/json", "Content-Encoding": "br"},
        timeout=5,
    )
    assert brotli.status_code == 415 and "br" in brotli.json()["error"]
    not_json = requests.post(
        url, data=b"{", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    # The server is still there and still takes exports.
    assert requests.post(url, json={}, timeout=5).json() == {}


@pytest.mark.parametrize("kind", ["serve", "daphne"])
def test_a_per_line_viewer_gets_each_line_of_a_burst_as_its_own_message_in_order(
    live_server_factory, kind
):
    # `serve` sends the lines that arrive together many at a time
    # (core/lean/websocket.py), daphne one at a time: a viewer sees no difference.
    server = live_server_factory(kind)
    server.start()
    expected = [f"burst {burst} line {i}" for burst in range(3) for i in range(700)]
    url = f"ws://127.0.0.1:{server.port}/ws/logs?app_id=burst"
    with connect(url, open_timeout=5, max_size=None) as viewer:
        for burst in range(3):
            records = [
                {"level": "INFO", "logger": "x", "message": message}
                for message in expected[burst * 700 : (burst + 1) * 700]
            ]
            response = requests.post(
                f"{server.url}/api/logs",
                json={"app_id": "burst", "records": records},
                timeout=10,
            )
            assert response.json()["accepted"] == 700
        # One JSON object per message: two lines in one would not parse.
        lines = [json.loads(viewer.recv(timeout=10)) for _ in expected]
        with pytest.raises(TimeoutError):
            viewer.recv(timeout=0.5)
    assert [line["message"] for line in lines] == expected
    assert {line["type"] for line in lines} == {"log"}
    ids = [line["id"] for line in lines]
    assert ids == sorted(set(ids))

"""Traces against a real dashboard: the OpenTelemetry SDK and sollol's Tracer."""

from __future__ import annotations

import zlib

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from sollol import tracing
from sollol.tracing import Tracer
from tests.test_client import wait_for
from tests.test_tracing import INCOMING, INCOMING_SPAN, INCOMING_TRACE, Recorder

pytestmark = pytest.mark.live


def get_trace(server, trace_id: str) -> dict | None:
    response = requests.get(f"{server.url}/api/traces/{trace_id}", timeout=2)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def flatten(nodes: list[dict]) -> dict[str, dict]:
    spans = {}
    for node in nodes:
        spans[node["name"]] = node
        spans.update(flatten(node["children"]))
    return spans


def sdk_tracer(exporter):
    provider = TracerProvider(
        resource=Resource.create({"service.name": "otel-app", "team": "infra"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("tests.traces")


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_it_shows_a_trace_the_opentelemetry_sdk_exported(live_dashboard, compression):
    exporter = OTLPSpanExporter(
        endpoint=f"{live_dashboard.url}/v1/traces", compression=compression, timeout=5
    )
    provider, tracer = sdk_tracer(exporter)
    with tracer.start_as_current_span("generate", kind=SpanKind.SERVER) as root:
        root.set_attribute("gen_ai.request.model", "llama3.2:3b")
        root.set_attribute("gen_ai.usage.output_tokens", 42)
        with tracer.start_as_current_span("call-node", kind=SpanKind.CLIENT) as call:
            call.set_attribute("node", "127.0.0.2:11434")
        try:
            with tracer.start_as_current_span("parse-reply"):
                raise ValueError("truncated JSON")
        except ValueError:
            pass
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    body = get_trace(live_dashboard, trace_id)
    assert body is not None, live_dashboard.log()
    assert body["span_count"] == 3
    assert body["services"] == ["otel-app"]
    assert body["error"] is True
    [top] = body["spans"]
    assert top["name"] == "generate" and top["kind"] == "server"
    assert top["span_id"] == format(root.get_span_context().span_id, "016x")
    assert top["attributes"] == {
        "gen_ai.request.model": "llama3.2:3b",
        "gen_ai.usage.output_tokens": 42,
    }
    assert [child["name"] for child in top["children"]] == ["call-node", "parse-reply"]
    call_node, parse_reply = top["children"]
    assert call_node["kind"] == "client"
    assert call_node["attributes"] == {"node": "127.0.0.2:11434"}
    assert parse_reply["status"] == "error"
    assert "truncated JSON" in parse_reply["status_message"]
    assert parse_reply["events"][0]["name"] == "exception"

    [listed] = requests.get(
        f"{live_dashboard.url}/api/traces?service=otel-app", timeout=2
    ).json()["traces"]
    assert listed["trace_id"] == trace_id
    assert listed["root_name"] == "generate"
    assert listed["duration_ms"] == pytest.approx(top["duration_ms"], abs=0.01)


def test_it_stores_an_sdk_re_export_once(live_dashboard):
    memory = InMemorySpanExporter()
    provider, tracer = sdk_tracer(memory)
    with tracer.start_as_current_span("batch-job") as root:
        for index in range(5):
            with tracer.start_as_current_span(f"step {index}") as step:
                step.set_status(StatusCode.OK)
    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=f"{live_dashboard.url}/v1/traces", timeout=5)
    # The SDK retries a batch whose answer it did not see; the dashboard must not
    # show it twice.
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    provider.shutdown()

    body = get_trace(live_dashboard, format(root.get_span_context().trace_id, "032x"))
    assert body["span_count"] == 6
    assert len(body["spans"][0]["children"]) == 6 - 1


def test_it_refuses_an_sdk_export_without_the_token(live_server_factory):
    server = live_server_factory(SOLLOL_API_TOKEN="s3cret")
    server.start()
    memory = InMemorySpanExporter()
    provider, tracer = sdk_tracer(memory)
    with tracer.start_as_current_span("secret-work") as root:
        pass
    spans = memory.get_finished_spans()
    anonymous = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=5)
    assert anonymous.export(spans) is SpanExportResult.FAILURE
    allowed = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces",
        headers={"Authorization": "Bearer s3cret"},
        timeout=5,
    )
    assert allowed.export(spans) is SpanExportResult.SUCCESS
    for exporter in (anonymous, allowed):
        exporter.shutdown()
    provider.shutdown()
    assert get_trace(server, format(root.get_span_context().trace_id, "032x"))


def test_it_traces_an_app_end_to_end_with_the_sollol_tracer(live_dashboard):
    node = Recorder()  # a service the app calls
    tracer = Tracer(live_dashboard.url, "router-app")
    tracing.instrument_requests()
    try:
        # The app handles a request that arrived with a traceparent.
        with tracer.trace("handle /generate", traceparent=INCOMING, model="llama"):
            with tracer.trace("call-node", node=node.url) as call:
                requests.post(node.url + "/api/generate", json={}, timeout=2)
            with pytest.raises(TimeoutError), tracer.trace("retry"):
                raise TimeoutError("node took too long")
        assert tracer.flush()
    finally:
        tracing.uninstrument_requests()
        tracer.close()
        node.close()

    [sent] = node.to("/api/generate")
    assert sent["headers"]["traceparent"] == f"00-{INCOMING_TRACE}-{call.span_id}-01"

    body = wait_for(lambda: get_trace(live_dashboard, INCOMING_TRACE))
    assert body["span_count"] == 3
    assert body["services"] == ["router-app"]
    assert body["error"] is True
    # The caller's span lives in another process: ours hangs from it, an orphan here.
    [handle] = body["spans"]
    assert handle["name"] == "handle /generate"
    assert handle["parent_span_id"] == INCOMING_SPAN and handle["orphan"] is True
    assert handle["kind"] == "server"
    assert handle["attributes"] == {"model": "llama"}
    spans = flatten(body["spans"])
    assert [child["name"] for child in handle["children"]] == ["call-node", "retry"]
    assert spans["call-node"]["span_id"] == call.span_id
    assert spans["call-node"]["attributes"] == {"node": node.url}
    assert spans["retry"]["status"] == "error"
    assert spans["retry"]["status_message"] == "TimeoutError: node took too long"


def test_it_refuses_oversized_and_bomb_exports_over_http(live_dashboard):
    url = f"{live_dashboard.url}/v1/traces"
    too_big = requests.post(
        url,
        data=b"\0" * (4 * 1024 * 1024 + 1),  # over SOLLOL_MAX_TRACE_BODY_BYTES
        headers={"Content-Type": "application/x-protobuf"},
        timeout=5,
    )
    assert too_big.status_code == 413 and "error" in too_big.json()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(100))
    bomb += compressor.flush()
    response = requests.post(
        url,
        data=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=5,
    )
    assert response.status_code == 413 and "inflates" in response.json()["error"]
    # The server is still there and still takes exports.
    assert requests.post(url, json={}, timeout=5).json() == {}

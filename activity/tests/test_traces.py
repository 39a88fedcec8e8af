"""Traces: native and OTLP/HTTP ingest, the list and the tree, retention."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib

import pytest
from django.test import override_settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from activity import tasks, traces
from activity.models import Span, Trace

T0 = 1_764_150_000.0  # Unix seconds
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT, CHILD = "00f067aa0ba902b7", "b7ad6b7169203331"
GRANDCHILD, SIBLING, LOST = "53995c3f42cd8ad8", "0020000000000001", "00aa00aa00aa00aa"
TOO_DEEP = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}

pytestmark = pytest.mark.django_db


def span(span_id: str, parent: str | None, begins: float, ends: float, **fields):
    """Return a native span starting `begins` seconds after T0."""
    return {
        "trace_id": TRACE,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": f"op-{span_id[:4]}",
        "start": T0 + begins,
        "end": T0 + ends,
        "service": "router",
        **fields,
    }


def post(client, body, path="/api/traces", **headers):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **headers)


def tree(client, trace_id=TRACE) -> dict:
    response = client.get(f"/api/traces/{trace_id}")
    assert response.status_code == 200, response.content
    return response.json()


def listed(client, query: str = "") -> list[dict]:
    response = client.get(f"/api/traces{query}")
    assert response.status_code == 200, response.content
    return response.json()["traces"]


def shape(nodes: list[dict]) -> list:
    """Return the tree as nested [name, [children...]] for compact asserts."""
    return [[node["span_id"], shape(node["children"])] for node in nodes]


# --- native ingest and the tree -----------------------------------------------------


def test_it_builds_the_tree_from_spans_that_arrive_out_of_order(client):
    # The child service exports first; the root arrives in a later batch.
    first = [
        span(GRANDCHILD, CHILD, 0.030, 0.040, service="ollama"),
        span(CHILD, ROOT, 0.010, 0.050, service="ollama"),
        span(LOST, "ffffffffffffffff", 0.005, 0.006, service="ollama"),
    ]
    assert post(client, first).json() == {"status": "ok", "accepted": 3}
    second = {
        "service": "gateway",
        "spans": [
            span(SIBLING, ROOT, 0.002, 0.008, service=None),
            span(
                ROOT,
                None,
                0.0,
                0.120,
                service=None,
                status="error",
                status_message="upstream timed out",
                attributes={"http.method": "POST", "retries": 2},
            ),
        ],
    }
    assert post(client, second).status_code == 200

    [summary] = listed(client)
    assert summary["trace_id"] == TRACE
    assert summary["root_name"] == f"op-{ROOT[:4]}"
    assert summary["root_service"] == "gateway"
    assert summary["services"] == ["gateway", "ollama"]
    assert summary["span_count"] == 5
    assert summary["duration_ms"] == pytest.approx(120.0, abs=0.01)
    assert summary["error"] is True
    assert summary["start"] == pytest.approx(T0)

    body = tree(client)
    # The orphan (its parent never arrived) sits at the top, by start time.
    assert shape(body["spans"]) == [
        [ROOT, [[SIBLING, []], [CHILD, [[GRANDCHILD, []]]]]],
        [LOST, []],
    ]
    root, lost = body["spans"]
    assert lost["orphan"] is True and root["orphan"] is False
    assert root["status"] == "error"
    assert root["status_message"] == "upstream timed out"
    assert root["attributes"] == {"http.method": "POST", "retries": 2}
    assert root["duration_ms"] == pytest.approx(120.0, abs=0.001)
    assert root["children"][1]["service"] == "ollama"


def test_it_accepts_rfc3339_times_to_the_nanosecond(client):
    spans = [
        {
            **span(ROOT, None, 0, 0),
            "start": "2026-11-26T12:00:00.000000100Z",
            "end": "2026-11-26T13:00:00.000001350+01:00",
        }
    ]
    assert post(client, spans).status_code == 200
    [root] = tree(client)["spans"]
    assert root["duration_ms"] == pytest.approx(0.00125)
    assert root["start"] == dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC).timestamp()


def test_it_stores_a_re_exported_span_once(client):
    spans = [span(ROOT, None, 0, 1), span(CHILD, ROOT, 0.1, 0.2)]
    post(client, spans)
    post(client, spans)
    post(client, [span(CHILD, ROOT, 0.1, 0.2, name="renamed")])
    assert Span.objects.count() == 2
    [summary] = listed(client)
    assert summary["span_count"] == 2
    assert tree(client)["spans"][0]["children"][0]["name"] == f"op-{CHILD[:4]}"


def test_it_lists_recent_traces_filtered_by_service_and_duration(client):
    def one_trace(trace_id, start, duration, services):
        root, *others = services
        spans = [{**span(ROOT, None, start, start + duration), "service": root}]
        spans += [
            {**span(f"{i + 1:016x}", ROOT, start, start + 0.001), "service": name}
            for i, name in enumerate(others)
        ]
        post(client, [{**s, "trace_id": trace_id} for s in spans])

    one_trace("a" * 32, 0, 0.5, ["gateway", "ollama"])
    one_trace("b" * 32, 10, 0.002, ["gateway"])
    one_trace("c" * 32, 20, 2.0, ["batch"])

    def ids(query=""):
        return [t["trace_id"][0] for t in listed(client, query)]

    assert ids() == ["c", "b", "a"]  # newest first
    assert ids("?service=ollama") == ["a"]
    assert ids("?service=gateway") == ["b", "a"]
    assert ids("?min_duration_ms=100") == ["c", "a"]
    assert ids("?min_duration_ms=100&service=gateway") == ["a"]
    assert ids("?limit=1") == ["c"]
    assert ids("?service=nobody") == []
    for query in ("?limit=100000", "?limit=-1", "?min_duration_ms=abc", "?limit=nan"):
        response = client.get(f"/api/traces{query}")
        assert response.status_code == 400 and "error" in response.json()


def test_it_shows_every_span_of_a_cyclic_or_very_deep_trace(client):
    deep = [span(f"{1:016x}", None, 0, 10)] + [
        span(f"{i:016x}", f"{i - 1:016x}", i * 0.001, 10) for i in range(2, 600)
    ]
    cyclic = [  # each claims the other as parent: no root at all
        span("c1" * 8, "c2" * 8, 0, 1),
        span("c2" * 8, "c1" * 8, 0.5, 1),
    ]
    post(client, deep)
    post(client, [{**s, "trace_id": OTHER_TRACE} for s in cyclic])

    def all_ids(nodes):
        for node in nodes:
            yield node["span_id"]
            yield from all_ids(node["children"])

    deep_ids = list(all_ids(tree(client)["spans"]))
    assert sorted(deep_ids) == sorted(s["span_id"] for s in deep)
    assert shape(tree(client, OTHER_TRACE)["spans"]) == [["c1" * 8, [["c2" * 8, []]]]]


def test_it_answers_unknown_and_malformed_trace_ids_in_json(client):
    response = client.get(f"/api/traces/{OTHER_TRACE}")
    assert response.status_code == 404
    assert OTHER_TRACE in response.json()["error"]
    for bad in ("xyz", "4bf92f3577b34da6", "0" * 32, TRACE + "00"):
        response = client.get(f"/api/traces/{bad}")
        assert response.status_code == 400, bad
        assert (
            "32 hexadecimal" in response.json()["error"]
            or "zeros" in (response.json()["error"])
        )
    response = client.get(f"/api/traces/{TRACE}/spans")
    assert response.status_code == 404
    assert response.json() == {"error": "no such endpoint"}


def test_it_finds_a_trace_by_an_uppercase_id(client):
    post(client, [span(ROOT, None, 0, 1, trace_id=TRACE.upper())])
    assert tree(client, TRACE.upper())["trace_id"] == TRACE


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not valid JSON"),
        (b'[{"start": NaN}]', "NaN"),
        (b"\xff\xfe", "UTF-8"),
        ({"spans": "nope"}, "list of spans"),
        ([1, 2], "spans[0]"),
        ([span(ROOT, None, 0, 1, trace_id=12)], "trace_id"),
        ([span(ROOT, None, 0, 1, trace_id="xyz" * 10 + "ab")], "trace_id"),
        ([span("12345", None, 0, 1)], "span_id"),
        ([span(ROOT, "not-hex-parent!!", 0, 1)], "parent_span_id"),
        ([span(ROOT, ROOT, 0, 1)], "own parent"),
        ([span(ROOT, None, 1, 0)], "ends before it starts"),
        ([span(ROOT, None, 0, 1, start="yesterday")], "start"),
        ([span(ROOT, None, 0, 1, start="2026-11-26T12:00:00")], "start"),
        ([span(ROOT, None, 0, 1, start=True)], "start"),
        ([span(ROOT, None, 0, 1, end=T0 * 1000)], "end"),
        ([span(ROOT, None, 0, 1, name="a\x00b")], "NUL"),
        ([span(ROOT, None, 0, 1, name="\ud800")], "surrogate"),
        ([span(ROOT, None, 0, 1, name="")], "name"),
        ([span(ROOT, None, 0, 1, status="fine")], "status"),
        ([span(ROOT, None, 0, 1, kind="sideways")], "kind"),
        ([span(ROOT, None, 0, 1, attributes=[1])], "attributes"),
        ([span(ROOT, None, 0, 1, start=1e300)], "finite"),
        (
            json.dumps([span(ROOT, None, 0, 1, start="X")]).replace('"X"', "1e400"),
            "out of range",  # refused as it is parsed: no float holds it
        ),
        ([span(ROOT, None, 0, 1, attributes=TOO_DEEP)], "nested"),
        ([span(ROOT, None, 0, 1, events=[{"timestamp": "soon"}])], "events[0]"),
    ],
)
def test_it_refuses_bad_native_spans_with_a_json_error(client, body, complaint):
    response = post(client, body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert not Span.objects.exists() and not Trace.objects.exists()


# --- OTLP/HTTP JSON -----------------------------------------------------------------


def otlp_json_request(*spans: dict, service: str = "checkout") -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": service}},
                        {"key": "host.name", "value": {"stringValue": "gpu-1"}},
                    ],
                    "droppedAttributesCount": 0,
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual", "version": "1.0"},
                        "spans": list(spans),
                        "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                    }
                ],
                "someFutureField": {"ignored": True},
            }
        ]
    }


def otlp_json_span(span_id: str, parent: str, start_ns: int, end_ns: int, **fields):
    return {
        "traceId": TRACE.upper(),  # hex is case-insensitive
        "spanId": span_id,
        "parentSpanId": parent,
        "name": f"op-{span_id[:4]}",
        "kind": 2,
        "startTimeUnixNano": str(start_ns),  # int64 as a string ...
        "endTimeUnixNano": end_ns,  # ... or as a number
        "flags": 257,
        "unknownField": [1, 2, 3],
        **fields,
    }


NS = int(T0) * 10**9


def test_it_takes_an_otlp_json_export(client):
    attributes = [
        {"key": "s", "value": {"stringValue": "text"}},
        {"key": "b", "value": {"boolValue": True}},
        {"key": "i", "value": {"intValue": "9007199254740993"}},
        {"key": "j", "value": {"intValue": 42}},
        {"key": "d", "value": {"doubleValue": 0.25}},
        {"key": "nan", "value": {"doubleValue": "NaN"}},
        {"key": "raw", "value": {"bytesValue": "AAEC"}},
        {"key": "empty", "value": {}},
        {
            "key": "a",
            "value": {
                "arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "two"}]}
            },
        },
        {
            "key": "kv",
            "value": {
                "kvlistValue": {"values": [{"key": "x", "value": {"boolValue": False}}]}
            },
        },
    ]
    request = otlp_json_request(
        otlp_json_span(
            ROOT,
            "",
            NS,
            NS + 2_500_000,
            attributes=attributes,
            status={"code": 2, "message": "boom"},
            events=[
                {
                    "timeUnixNano": str(NS + 1_000_000),
                    "name": "exception",
                    "attributes": [
                        {"key": "exception.type", "value": {"stringValue": "E"}}
                    ],
                }
            ],
        ),
        otlp_json_span(CHILD, ROOT, NS + 1_000, NS + 2_000, kind="SPAN_KIND_CLIENT"),
    )
    response = post(client, request, path="/v1/traces")
    assert response.status_code == 200
    assert response.json() == {}

    body = tree(client)
    [root] = body["spans"]
    assert body["services"] == ["checkout"]
    assert root["service"] == "checkout"
    assert root["kind"] == "server"
    assert root["status"] == "error" and root["status_message"] == "boom"
    assert root["duration_ms"] == 2.5
    assert root["attributes"] == {
        "s": "text",
        "b": True,
        "i": 9007199254740993,
        "j": 42,
        "d": 0.25,
        "nan": "NaN",
        "raw": "AAEC",
        "empty": None,
        "a": [1, "two"],
        "kv": {"x": False},
    }
    assert root["events"] == [
        {
            "name": "exception",
            "timestamp": (NS + 1_000_000) / 1e9,
            "attributes": {"exception.type": "E"},
        }
    ]
    [child] = root["children"]
    assert child["kind"] == "client"
    assert child["duration_ms"] == 0.001


def test_it_answers_partial_success_for_bad_otlp_spans(client):
    request = otlp_json_request(
        otlp_json_span(ROOT, "", NS, NS + 1),
        otlp_json_span("zz" * 8, "", NS, NS + 1),
        otlp_json_span(CHILD, ROOT, NS + 5, NS + 1),
        otlp_json_span(SIBLING, ROOT, 0, NS),
    )
    response = post(client, request, path="/v1/traces")
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == 3
    assert "spanId" in partial["errorMessage"]
    assert "ends before it starts" in partial["errorMessage"]
    assert [s["span_id"] for s in tree(client)["spans"]] == [ROOT]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b" ", "not valid JSON"),
        (b"<xml/>", "not valid JSON"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"x": NaN}]}]}]}', "NaN"),
        (b"[]", "ExportTraceServiceRequest"),
        (b'{"resourceSpans": {}}', "resourceSpans"),
        (b'{"resourceSpans": [{"scopeSpans": 5}]}', "scopeSpans"),
        (b'{"resourceSpans": [' * 5000 + b"]" * 5000 + b"}", "JSON"),
    ],
)
def test_it_refuses_malformed_otlp_json_with_a_json_error(client, body, complaint):
    response = post(client, body, path="/v1/traces")
    assert response.status_code == 400
    assert complaint in response.json()["error"]


def test_it_refuses_what_is_neither_json_nor_protobuf(client):
    response = client.post("/v1/traces", data=b"x", content_type="text/plain")
    assert response.status_code == 415
    assert "application/x-protobuf" in response.json()["error"]
    response = client.get("/v1/traces")
    assert response.status_code == 405 and response["Allow"] == "POST"


# --- OTLP/HTTP protobuf -------------------------------------------------------------


def attribute(key: str, **value) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def proto_request(*spans: ProtoSpan, service: str = "inference") -> bytes:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[attribute("service.name", string_value=service)]
                ),
                scope_spans=[ScopeSpans(spans=list(spans))],
            )
        ]
    ).SerializeToString()


def proto_span(span_id: str, parent: str, start_ns: int, end_ns: int, **fields):
    return ProtoSpan(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent),
        name=f"op-{span_id[:4]}",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
        **fields,
    )


def post_proto(client, body: bytes, **headers):
    return client.post(
        "/v1/traces", data=body, content_type="application/x-protobuf", **headers
    )


def test_it_takes_an_otlp_protobuf_export(client):
    body = proto_request(
        proto_span(
            ROOT,
            "",
            NS,
            NS + 7_000_000,
            kind=ProtoSpan.SPAN_KIND_SERVER,
            status=Status(code=Status.STATUS_CODE_OK),
            attributes=[
                attribute("gen_ai.request.model", string_value="llama3.2:3b"),
                attribute("tokens", int_value=128),
                attribute("ratio", double_value=float("inf")),
                attribute("tags", array_value={"values": [AnyValue(bool_value=True)]}),
            ],
        ),
        proto_span(CHILD, ROOT, NS + 1_000_000, NS + 6_000_000),
    )
    response = post_proto(client, body)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")

    [root] = tree(client)["spans"]
    assert root["service"] == "inference"
    assert root["status"] == "ok" and root["kind"] == "server"
    assert root["duration_ms"] == 7.0
    assert root["attributes"] == {
        "gen_ai.request.model": "llama3.2:3b",
        "tokens": 128,
        "ratio": "Infinity",
        "tags": [True],
    }
    assert [child["span_id"] for child in root["children"]] == [CHILD]


def test_it_counts_bad_protobuf_spans_as_rejected(client):
    bad_id = proto_span(ROOT, "", NS, NS + 1)
    bad_id.span_id = b"\x01\x02\x03"
    body = proto_request(bad_id, proto_span(CHILD, "", NS, NS + 1))
    response = post_proto(client, body)
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "span_id must be 8 bytes" in answer.partial_success.error_message
    assert [s["span_id"] for s in tree(client)["spans"]] == [CHILD]


def test_it_refuses_a_body_that_is_not_protobuf_in_protobuf(client):
    """OTLP/HTTP: an error answers in the request's encoding, a google.rpc.Status."""
    from google.rpc.status_pb2 import Status as RpcStatus

    response = post_proto(client, b"\xff\xff\xff\xff not protobuf")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/x-protobuf"
    status = RpcStatus.FromString(response.content)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in status.message


@override_settings(SOLLOL_API_TOKENS=["t"])
def test_a_protobuf_exporter_without_the_token_hears_why_in_protobuf(client):
    from google.rpc.status_pb2 import Status as RpcStatus

    response = post_proto(client, proto_request(proto_span(ROOT, "", NS, NS + 1)))
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert RpcStatus.FromString(response.content).code == 16  # UNAUTHENTICATED


def test_it_takes_gzipped_exports_in_both_encodings(client):
    json_body = gzip.compress(
        json.dumps(otlp_json_request(otlp_json_span(ROOT, "", NS, NS + 1))).encode()
    )
    response = post(client, json_body, path="/v1/traces", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200 and response.json() == {}
    proto_body = gzip.compress(proto_request(proto_span(CHILD, ROOT, NS, NS + 1)))
    response = post_proto(client, proto_body, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200
    assert shape(tree(client)["spans"]) == [[ROOT, [[CHILD, []]]]]


def error_of(response) -> str:
    """The error's text, in the encoding it came in (protobuf for protobuf)."""
    if response["Content-Type"] == "application/x-protobuf":
        from google.rpc.status_pb2 import Status as RpcStatus

        return RpcStatus.FromString(response.content).message
    return response.json()["error"]


def test_it_refuses_a_gzip_bomb_without_inflating_it(client, settings):
    settings.SOLLOL_MAX_DECOMPRESSED_BYTES = 1 << 20
    # 200 MiB of zeros in about 200 KB, made without holding the 200 MiB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    megabyte = bytes(1 << 20)
    bomb = b"".join(compressor.compress(megabyte) for _ in range(200))
    bomb += compressor.flush()
    assert len(bomb) < settings.SOLLOL_MAX_BODY_BYTES
    for content_type in ("application/json", "application/x-protobuf"):
        response = client.post(
            "/v1/traces",
            data=bomb,
            content_type=content_type,
            HTTP_CONTENT_ENCODING="gzip",
        )
        assert response.status_code == 413
        assert "inflates" in error_of(response)


def test_it_refuses_broken_or_unknown_compression(client):
    whole = gzip.compress(b"{}")
    for body, status in ((whole[:-6], 400), (b"not gzip at all", 400)):
        response = post(client, body, path="/v1/traces", HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == status
        assert "gzip" in response.json()["error"]
    response = post(client, b"{}", path="/v1/traces", HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415 and "br" in response.json()["error"]


def test_it_keeps_an_otlp_re_export_idempotent(client):
    body = proto_request(
        proto_span(ROOT, "", NS, NS + 1), proto_span(CHILD, ROOT, NS, NS + 1)
    )
    for _ in range(3):
        assert post_proto(client, body).status_code == 200
    assert Span.objects.count() == 2
    assert listed(client)[0]["span_count"] == 2


# --- write protection ---------------------------------------------------------------


def test_it_protects_every_trace_write_with_the_token(client, settings):
    settings.SOLLOL_API_TOKENS = ["s3cret"]
    native = json.dumps([span(ROOT, None, 0, 1)])
    proto = proto_request(proto_span(CHILD, ROOT, NS, NS + 1))

    def writes(**headers):
        return [
            client.post(
                "/api/traces", native, content_type="application/json", **headers
            ),
            post(client, otlp_json_request(), path="/v1/traces", **headers),
            post_proto(client, proto, **headers),
        ]

    for response in writes():
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
        assert "Bearer" in error_of(response)
    for response in writes(HTTP_AUTHORIZATION="Bearer wrong"):
        assert response.status_code == 403
        assert "not valid" in error_of(response)
    assert not Span.objects.exists()
    assert client.get("/api/traces").status_code == 200  # reads stay open
    for response in writes(HTTP_AUTHORIZATION="Bearer s3cret"):
        assert response.status_code == 200
    assert Span.objects.count() == 2


# --- retention ----------------------------------------------------------------------


def ingest(trace_id: str, spans: int, *, received: dt.datetime) -> None:
    items = [
        traces.parse_native_span(
            span(
                f"{i + 1:016x}",
                None if i == 0 else f"{1:016x}",
                0,
                1,
                trace_id=trace_id,
            )
        )
        for i in range(spans)
    ]
    traces.ingest_spans(items, now=received)


def test_it_prunes_whole_traces_by_age_and_by_span_count():
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)
    ingest("a" * 32, 2, received=now - 30 * hour)  # too old
    ingest("b" * 32, 3, received=now - 3 * hour)
    ingest("c" * 32, 4, received=now - 2 * hour)
    ingest("d" * 32, 2, received=now - hour)

    assert traces.prune_traces(now=now, max_age=86400, max_count=100) == 2
    assert sorted(Trace.objects.values_list("trace_id", flat=True)) == [
        "b" * 32,
        "c" * 32,
        "d" * 32,
    ]
    # 2 + 4 fit in 6 spans; adding b's 3 would not: b goes, whole.
    assert traces.prune_traces(now=now, max_age=86400, max_count=6) == 3
    assert sorted(Trace.objects.values_list("trace_id", flat=True)) == [
        "c" * 32,
        "d" * 32,
    ]
    assert Span.objects.count() == 6
    assert traces.prune_traces(now=now, max_age=86400, max_count=6) == 0


def test_it_prunes_traces_on_the_beat_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["prune-traces"]
    assert entry["task"] == "activity.tasks.prune_traces"
    settings.SOLLOL_TRACE_RETENTION_AGE = 3600
    settings.SOLLOL_TRACE_RETENTION_COUNT = 1000
    ingest("e" * 32, 2, received=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    ingest("f" * 32, 1, received=dt.datetime.now(dt.UTC))
    assert tasks.prune_traces.run() == 2
    assert list(Trace.objects.values_list("trace_id", flat=True)) == ["f" * 32]


def test_it_keeps_a_trace_that_is_still_receiving_spans():
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    ingest("a" * 32, 1, received=now - dt.timedelta(days=2))
    # A late span arrives: the trace counts as fresh again, and complete.
    late = traces.parse_native_span(
        span(f"{9:016x}", f"{1:016x}", 0, 1, trace_id="a" * 32)
    )
    traces.ingest_spans([late], now=now)
    assert traces.prune_traces(now=now, max_age=86400, max_count=100) == 0
    assert Trace.objects.get().span_count == 2


def test_it_shows_traces_and_spans_read_only_in_the_admin(admin_client, client):
    post(client, [span(ROOT, None, 0, 1), span(CHILD, ROOT, 0.1, 0.2)])
    for model in ("trace", "span"):
        page = admin_client.get(f"/admin/activity/{model}/")
        assert page.status_code == 200
        assert ROOT in page.content.decode() or TRACE in page.content.decode()
        assert admin_client.get(f"/admin/activity/{model}/add/").status_code == 403
    row = Span.objects.get(span_id=CHILD)
    page = admin_client.get(f"/admin/activity/span/{row.pk}/change/")
    assert page.status_code == 200
    assert "Save" not in page.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_a_full_sdk_batch_fits_where_other_bodies_would_not():
    """512 spans uncompressed exceed the 256 KB of other writes, not the trace limit."""
    from channels.testing import HttpCommunicator

    from sollol_site.asgi import application

    spans = [
        otlp_json_span(f"{i + 1:016x}", "", NS + i, NS + 10**6 + i, name="x" * 400)
        for i in range(512)
    ]
    body = json.dumps(otlp_json_request(*spans)).encode()
    assert 256 * 1024 < len(body) < 4 * 1024 * 1024

    async def send(path: str) -> int:
        communicator = HttpCommunicator(
            application,
            "POST",
            path,
            body=body,
            headers=[(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        )
        return (await communicator.get_response(timeout=20))["status"]

    assert await send("/v1/traces") == 200
    assert await Span.objects.acount() == 512
    assert await send("/api/applications/register") == 413


# --- samples: the page's trace list follows ingest ---------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lane", ["native", "otlp-json", "otlp-protobuf"])
async def test_storing_spans_tells_viewers_which_traces_changed(lane):
    from channels.testing import HttpCommunicator, WebsocketCommunicator

    from sollol_site.asgi import application

    origin = [(b"origin", b"http://127.0.0.1:8080")]
    asked = WebsocketCommunicator(
        application, "/ws/ollama_activity?samples=1", headers=origin
    )
    plain = WebsocketCommunicator(application, "/ws/ollama_activity", headers=origin)
    assert (await asked.connect(timeout=5))[0] and (await plain.connect(timeout=5))[0]
    if lane == "native":
        path, content_type = "/api/traces", b"application/json"
        body = json.dumps(
            [span(ROOT, None, 0, 1), span(CHILD, ROOT, 0.1, 0.5, trace_id=OTHER_TRACE)]
        ).encode()
    elif lane == "otlp-json":
        path, content_type = "/v1/traces", b"application/json"
        body = json.dumps(
            otlp_json_request(
                otlp_json_span(ROOT, "", NS, NS + 10**6),
                otlp_json_span(CHILD, ROOT, NS, NS + 10**5, traceId=OTHER_TRACE),
            )
        ).encode()
    else:
        path, content_type = "/v1/traces", b"application/x-protobuf"
        other = proto_span(CHILD, ROOT, NS, NS + 10**5)
        other.trace_id = bytes.fromhex(OTHER_TRACE)
        body = proto_request(proto_span(ROOT, "", NS, NS + 10**6), other)
    response = await HttpCommunicator(
        application,
        "POST",
        path,
        body=body,
        headers=[(b"host", b"127.0.0.1"), (b"content-type", content_type)],
    ).get_response(timeout=10)
    assert response["status"] == 200, response["body"]

    message = await asked.receive_json_from(timeout=5)
    assert message["type"] == "samples" and "id" not in message
    assert message["traces"] == sorted([TRACE, OTHER_TRACE])
    assert message["traces_total"] == 2
    # Only for who asked: spans are no events, the plain stream stays quiet.
    assert await plain.receive_nothing(timeout=0.3)
    await asked.disconnect()
    await plain.disconnect()


def test_nothing_is_announced_for_spans_that_were_not_stored(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert post(client, [span(ROOT, None, 0, 1, end=T0 - 1)]).status_code == 400
    assert callbacks == []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert post(client, [span(ROOT, None, 0, 1)]).status_code == 200
    assert len(callbacks) == 1

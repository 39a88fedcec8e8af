"""OpenTelemetry OTLP/HTTP trace export, JSON and protobuf, into SpanIn values.

Any OpenTelemetry SDK or Collector can export here. The two encodings carry the
same ExportTraceServiceRequest; each has its decoder below and both end in
activity.traces.make_span. Following the OTLP specification, a request that is
malformed as a whole is refused (400), while single bad spans are dropped and
counted in the answer's partialSuccess, so one broken span does not cost the
exporter the rest of its batch.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from activity.choices import SpanKind, SpanStatus
from activity.traces import (
    UNKNOWN_SERVICE,
    SpanIn,
    check_time_ns,
    make_span,
    parse_span_id,
    parse_trace_id,
)
from core import validators
from core.jsonio import PayloadError, check_text

# Indexes are the protobuf enum numbers (SpanKind, Status.StatusCode).
KINDS = [
    SpanKind.UNSPECIFIED,
    SpanKind.INTERNAL,
    SpanKind.SERVER,
    SpanKind.CLIENT,
    SpanKind.PRODUCER,
    SpanKind.CONSUMER,
]
STATUSES = [SpanStatus.UNSET, SpanStatus.OK, SpanStatus.ERROR]
MAX_VALUE_DEPTH = 8
INT64 = range(-(2**63), 2**63)
UINT64 = range(0, 2**64)
MAX_REPORTED_ERRORS = 3


class BodyTooLarge(Exception):
    """The body inflates beyond the configured limit (413)."""


class UnsupportedEncoding(Exception):
    """A Content-Encoding other than gzip or identity (415)."""


@dataclass
class Export:
    """The spans of one export request that were valid, and what was not."""

    spans: list[SpanIn] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, where: str, error: Exception) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(f"{where}: {error}")

    @property
    def error_message(self) -> str:
        more = self.rejected - len(self.errors)
        suffix = f"; and {more} more" if more > 0 else ""
        return "; ".join(self.errors) + suffix


# --- the body -----------------------------------------------------------------------


def inflate(body: bytes, content_encoding: str | None, *, limit: int) -> bytes:
    """Return the body decoded per Content-Encoding, never more than limit bytes.

    A few kilobytes of gzip can inflate to gigabytes; output is produced at most
    limit + 1 bytes at a time, so a zip bomb costs that much memory and no more.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding!r} is not supported; use gzip or none"
        )
    parts: list[bytes] = []
    size = 0
    remaining = body
    # A gzip stream may hold several members one after the other.
    while remaining:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(remaining, limit + 1 - size)
        except zlib.error as exc:
            raise PayloadError(f"the body is not valid gzip: {exc}") from None
        size += len(part)
        if size > limit:
            raise BodyTooLarge(f"the body inflates to more than {limit} bytes")
        if not inflater.eof:
            raise PayloadError("the gzip body is truncated")
        parts.append(part)
        remaining = inflater.unused_data
    return b"".join(parts)


# --- OTLP JSON ----------------------------------------------------------------------


def _get(obj: dict, camel: str, default: Any = None) -> Any:
    """Return a field by its lowerCamelCase name or its original snake_case name."""
    if camel in obj:
        return obj[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(snake, default)


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{where} must be a list")
    return value


def _object(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object")
    return value


def _integer(value: Any, where: str, allowed: range) -> int:
    """Return an int64/uint64 given as a JSON number or a decimal string."""
    if isinstance(value, bool):
        raise PayloadError(f"{where} must be an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise PayloadError(f"{where} must be an integer") from None
    if not isinstance(value, int) or value not in allowed:
        raise PayloadError(f"{where} must be an integer in range")
    return value


def _double(value: Any, where: str) -> float | str:
    """Return a double; NaN and infinities (strings in proto JSON) stay strings."""
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{where} must be a number")
    return float(value)


def _enum(value: Any, names: list[str], prefix: str, where: str) -> str:
    """Return our name for a proto enum sent as its number or its full name."""
    if value is None:
        return names[0]
    if isinstance(value, str) and value.upper().startswith(prefix):
        name = value.lower().removeprefix(prefix.lower())
        if name in names:
            return name
        raise PayloadError(f"{where} {value!r} is unknown")
    number = _integer(value, where, INT64)
    # Enums are open in proto3: a number from a newer spec means "unspecified".
    return names[number] if 0 <= number < len(names) else names[0]


def any_value_json(value: Any, depth: int = 1) -> Any:
    """Return the plain JSON value of an OTLP JSON AnyValue."""
    if depth > MAX_VALUE_DEPTH:
        raise PayloadError(f"an attribute is nested more than {MAX_VALUE_DEPTH} deep")
    if not isinstance(value, dict):
        raise PayloadError("an attribute value must be an AnyValue object")
    if (text := _get(value, "stringValue")) is not None:
        if not isinstance(text, str):
            raise PayloadError("stringValue must be a string")
        return check_text(text, "stringValue")
    if (flag := _get(value, "boolValue")) is not None:
        if not isinstance(flag, bool):
            raise PayloadError("boolValue must be true or false")
        return flag
    if (number := _get(value, "intValue")) is not None:
        return _integer(number, "intValue", INT64)
    if (number := _get(value, "doubleValue")) is not None:
        return _double(number, "doubleValue")
    if (array := _get(value, "arrayValue")) is not None:
        values = _list(_object(array, "arrayValue").get("values"), "arrayValue")
        return [any_value_json(item, depth + 1) for item in values]
    if (kvlist := _get(value, "kvlistValue")) is not None:
        pairs = _list(_object(kvlist, "kvlistValue").get("values"), "kvlistValue")
        return key_values_json(pairs, depth + 1)
    if (raw := _get(value, "bytesValue")) is not None:
        if not isinstance(raw, str):
            raise PayloadError("bytesValue must be a base64 string")
        return check_text(raw, "bytesValue")  # shown as the base64 it came as
    return None


def key_values_json(pairs: Any, depth: int = 1) -> dict[str, Any]:
    """Return a list of OTLP JSON KeyValue as a dict (a repeated key: last wins)."""
    result: dict[str, Any] = {}
    for pair in _list(pairs, "attributes"):
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str):
            raise PayloadError('an attribute must be {"key": "...", "value": {...}}')
        key = check_text(pair["key"], "attribute key")
        result[key] = any_value_json(pair.get("value") or {}, depth)
    return result


def _hex_id(value: Any, parse: Callable[..., str], where: str, **kwargs) -> str:
    if not isinstance(value, str) and value is not None:
        raise PayloadError(f"{where} must be a hex string")
    return parse(value, where, **kwargs)


def _span_json(span: Any, service: str) -> SpanIn:
    span = _object(span, "span")
    status = _object(_get(span, "status"), "status")
    events = []
    for event in _list(_get(span, "events"), "events"):
        event = _object(event, "event")
        events.append(
            {
                "name": validators.text(
                    event.get("name"), "event name", max_length=500, longer="cut"
                ),
                "timestamp": check_time_ns(
                    _integer(_get(event, "timeUnixNano"), "event time", UINT64),
                    "event timeUnixNano",
                )
                / 1e9,
                "attributes": key_values_json(_get(event, "attributes")),
            }
        )
    return make_span(
        trace_id=_hex_id(_get(span, "traceId"), parse_trace_id, "traceId"),
        span_id=_hex_id(_get(span, "spanId"), parse_span_id, "spanId"),
        parent_span_id=_hex_id(
            _get(span, "parentSpanId"), parse_span_id, "parentSpanId", parent=True
        ),
        name=span.get("name") or "",
        service=service,
        kind=_enum(_get(span, "kind"), KINDS, "SPAN_KIND_", "kind"),
        start_ns=check_time_ns(
            _integer(_get(span, "startTimeUnixNano"), "startTimeUnixNano", UINT64),
            "startTimeUnixNano",
        ),
        end_ns=check_time_ns(
            _integer(_get(span, "endTimeUnixNano"), "endTimeUnixNano", UINT64),
            "endTimeUnixNano",
        ),
        status=_enum(status.get("code"), STATUSES, "STATUS_CODE_", "status code"),
        status_message=status.get("message") or "",
        attributes=key_values_json(_get(span, "attributes")),
        events=events,
    )


def _service(attributes: dict[str, Any]) -> str:
    name = attributes.get("service.name")
    return name if isinstance(name, str) and name else UNKNOWN_SERVICE


def parse_json(data: Any) -> Export:
    """Decode an ExportTraceServiceRequest in the OTLP JSON encoding."""
    if not isinstance(data, dict):
        raise PayloadError("the body must be an ExportTraceServiceRequest object")
    export = Export()
    for r, resource_spans in enumerate(
        _list(_get(data, "resourceSpans"), "resourceSpans")
    ):
        resource_spans = _object(resource_spans, f"resourceSpans[{r}]")
        resource = _object(_get(resource_spans, "resource"), "resource")
        service = _service(key_values_json(resource.get("attributes")))
        scopes = _get(resource_spans, "scopeSpans")
        if scopes is None:  # the name before OTLP 1.0
            scopes = _get(resource_spans, "instrumentationLibrarySpans")
        for s, scope_spans in enumerate(_list(scopes, "scopeSpans")):
            scope_spans = _object(scope_spans, "scopeSpans")
            for n, span in enumerate(_list(scope_spans.get("spans"), "spans")):
                try:
                    export.spans.append(_span_json(span, service))
                except PayloadError as exc:
                    export.reject(f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]", exc)
    return export


def json_response(export: Export) -> dict[str, Any]:
    """Return the ExportTraceServiceResponse in the OTLP JSON encoding."""
    if not export.rejected:
        return {}
    return {
        "partialSuccess": {
            "rejectedSpans": export.rejected,
            "errorMessage": export.error_message,
        }
    }


# --- OTLP protobuf ------------------------------------------------------------------


def _any_value_proto(value, depth: int = 1) -> Any:
    if depth > MAX_VALUE_DEPTH:
        raise PayloadError(f"an attribute is nested more than {MAX_VALUE_DEPTH} deep")
    which = value.WhichOneof("value")
    if which == "string_value":
        return check_text(value.string_value, "string_value")
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    if which == "array_value":
        return [_any_value_proto(item, depth + 1) for item in value.array_value.values]
    if which == "kvlist_value":
        return _key_values_proto(value.kvlist_value.values, depth + 1)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _key_values_proto(pairs, depth: int = 1) -> dict[str, Any]:
    return {
        check_text(pair.key, "attribute key"): _any_value_proto(pair.value, depth)
        for pair in pairs
    }


def _bytes_id(raw: bytes, size: int, where: str, *, parent: bool = False) -> str:
    if parent and not raw:
        return ""
    if len(raw) != size:
        raise PayloadError(f"{where} must be {size} bytes, not {len(raw)}")
    if not any(raw):
        if parent:
            return ""
        raise PayloadError(f"{where} must not be all zeros")
    return raw.hex()


def _span_proto(span, service: str) -> SpanIn:
    events = [
        {
            "name": check_text(event.name, "event name"),
            "timestamp": check_time_ns(event.time_unix_nano, "event time_unix_nano")
            / 1e9,
            "attributes": _key_values_proto(event.attributes),
        }
        for event in span.events
    ]
    kind = span.kind if 0 <= span.kind < len(KINDS) else 0
    code = span.status.code if 0 <= span.status.code < len(STATUSES) else 0
    return make_span(
        trace_id=_bytes_id(span.trace_id, 16, "trace_id"),
        span_id=_bytes_id(span.span_id, 8, "span_id"),
        parent_span_id=_bytes_id(span.parent_span_id, 8, "parent_span_id", parent=True),
        name=span.name,
        service=service,
        kind=KINDS[kind],
        start_ns=check_time_ns(span.start_time_unix_nano, "start_time_unix_nano"),
        end_ns=check_time_ns(span.end_time_unix_nano, "end_time_unix_nano"),
        status=STATUSES[code],
        status_message=span.status.message,
        attributes=_key_values_proto(span.attributes),
        events=events,
    )


def parse_protobuf(body: bytes) -> Export:
    """Decode an ExportTraceServiceRequest in the protobuf encoding."""
    # Imported here: only protobuf exports pay for loading protobuf.
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise PayloadError(
            f"the body is not an ExportTraceServiceRequest: {exc}"
        ) from None
    export = Export()
    for r, resource_spans in enumerate(request.resource_spans):
        try:
            attributes = _key_values_proto(resource_spans.resource.attributes)
        except PayloadError as exc:
            raise PayloadError(f"resource_spans[{r}].resource: {exc}") from None
        service = _service(attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for n, span in enumerate(scope_spans.spans):
                try:
                    export.spans.append(_span_proto(span, service))
                except PayloadError as exc:
                    export.reject(
                        f"resource_spans[{r}].scope_spans[{s}].spans[{n}]", exc
                    )
    return export


# The gRPC status code of each HTTP status an export can get (OTLP/HTTP answers
# errors with a google.rpc.Status in the request's own encoding).
GRPC_CODES = {400: 3, 401: 16, 403: 7, 405: 12, 413: 8, 415: 3, 429: 8, 503: 14}


def status_protobuf(http_status: int, message: str) -> bytes:
    """Return a google.rpc.Status {code, message}, serialized (by hand: 2 fields)."""
    text = message.encode("utf-8", "replace")
    code = GRPC_CODES.get(http_status, 2)  # 2: UNKNOWN
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def protobuf_response(export: Export) -> bytes:
    """Return the ExportTraceServiceResponse, serialized."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTracePartialSuccess,
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    if export.rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(
                rejected_spans=export.rejected, error_message=export.error_message
            )
        )
    return response.SerializeToString()

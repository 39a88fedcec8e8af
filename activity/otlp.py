"""OpenTelemetry OTLP/HTTP export, JSON and protobuf: spans and log records.

Any OpenTelemetry SDK or Collector can export here: traces (POST /v1/traces) become
activity.traces SpanIn values, logs (POST /v1/logs) activity.logs LogLine values.
The two signals share the body (gzip), the values (AnyValue, KeyValue), the shape
of a request (resources, their scopes, the scopes' items) and of an answer
(partialSuccess, google.rpc.Status); each has its item decoders, one for each
encoding. Following the OTLP specification, a request that is malformed as a whole
is refused (400), while single bad items are dropped and counted in the answer's
partialSuccess, so one broken span or record does not cost the exporter the rest of
its batch.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from activity import logs
from activity.choices import SpanKind, SpanStatus
from activity.models import LogRecord
from activity.traces import (
    UNKNOWN_SERVICE,
    ZERO_SPAN_ID,
    ZERO_TRACE_ID,
    SpanIn,
    check_time_ns,
    make_span,
    parse_span_id,
    parse_trace_id,
    time_from_ns,
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
# SeverityNumber: 1-4 are TRACE to TRACE4, 5-8 DEBUG to DEBUG4, ... 21-24 FATAL4.
SEVERITIES = ["unspecified"] + [
    f"{name}{step if step > 1 else ''}"
    for name in ("trace", "debug", "info", "warn", "error", "fatal")
    for step in range(1, 5)
]
MAX_SEVERITY_TEXT = 100
MAX_VALUE_DEPTH = 8
INT64 = range(-(2**63), 2**63)
UINT64 = range(0, 2**64)
MAX_REPORTED_ERRORS = 3


class BodyTooLarge(Exception):
    """The body inflates beyond the configured limit (413)."""


class UnsupportedEncoding(Exception):
    """A Content-Encoding other than gzip or identity (415)."""


@dataclass(frozen=True)
class Signal:
    """What one signal's export request calls its parts (OTLP JSON names; the
    protobuf fields are their snake_case), and how many items it may hold."""

    request: str  # the request message, a class of proto_module
    proto_module: str
    resources: str
    scopes: str
    old_scopes: str  # the name before OTLP 1.0
    items: str
    rejected: str  # the count in partialSuccess
    max_items: int | None = None


TRACES = Signal(
    request="ExportTraceServiceRequest",
    proto_module="opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    resources="resourceSpans",
    scopes="scopeSpans",
    old_scopes="instrumentationLibrarySpans",
    items="spans",
    rejected="rejectedSpans",
)
LOGS = Signal(
    request="ExportLogsServiceRequest",
    proto_module="opentelemetry.proto.collector.logs.v1.logs_service_pb2",
    resources="resourceLogs",
    scopes="scopeLogs",
    old_scopes="instrumentationLibraryLogs",
    items="logRecords",
    rejected="rejectedLogRecords",
    max_items=logs.MAX_LINES_PER_BATCH,  # as POST /api/logs takes
)


@dataclass
class Export:
    """The items (spans, log lines) of one export request that were valid, and what
    was not."""

    signal: Signal
    items: list[Any] = field(default_factory=list)
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

    def check_size(self, seen: int) -> None:
        """Refuse the request once it holds more items than the signal takes."""
        if self.signal.max_items is not None and seen > self.signal.max_items:
            raise PayloadError(
                f"at most {self.signal.max_items} {self.signal.items} per request"
            )


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


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _get(obj: dict, camel: str, default: Any = None) -> Any:
    """Return a field by its lowerCamelCase name or its original snake_case name."""
    if camel in obj:
        return obj[camel]
    return obj.get(_snake(camel), default)


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


def _hex_id(
    value: Any, parse: Callable[..., str], where: str, *, optional: bool = False
) -> str:
    if optional and value in (None, "", ZERO_TRACE_ID, ZERO_SPAN_ID):
        return ""
    if not isinstance(value, str) and value is not None:
        raise PayloadError(f"{where} must be a hex string")
    return parse(value, where)


def _parse_json(
    data: Any, signal: Signal, decode: Callable[[Any, str, dict], Any]
) -> Export:
    """Decode an export request in the OTLP JSON encoding, item by item."""
    if not isinstance(data, dict):
        raise PayloadError(f"the body must be an {signal.request} object")
    export = Export(signal)
    seen = 0
    for r, resource_group in enumerate(
        _list(_get(data, signal.resources), signal.resources)
    ):
        resource_group = _object(resource_group, f"{signal.resources}[{r}]")
        resource = _object(_get(resource_group, "resource"), "resource")
        service = _service(key_values_json(resource.get("attributes")))
        scope_groups = _get(resource_group, signal.scopes)
        if scope_groups is None:  # the name before OTLP 1.0
            scope_groups = _get(resource_group, signal.old_scopes)
        for s, scope_group in enumerate(_list(scope_groups, signal.scopes)):
            scope_group = _object(scope_group, signal.scopes)
            items = _list(_get(scope_group, signal.items), signal.items)
            seen += len(items)
            export.check_size(seen)
            for n, item in enumerate(items):
                try:
                    export.items.append(decode(item, service, scope_group))
                except PayloadError as exc:
                    where = f"{signal.resources}[{r}].{signal.scopes}[{s}]"
                    export.reject(f"{where}.{signal.items}[{n}]", exc)
    return export


def _span_json(span: Any, service: str, scope_spans: dict) -> SpanIn:
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
            _get(span, "parentSpanId"), parse_span_id, "parentSpanId", optional=True
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


def _log_json(record: Any, service: str, scope_logs: dict) -> logs.LogLine:
    if not isinstance(record, dict):
        raise PayloadError("a logRecord must be an object")
    body = _get(record, "body")
    return _log_line(
        service=service,
        scope_name=_object(scope_logs.get("scope"), "scope").get("name"),
        severity=_enum(
            _get(record, "severityNumber"),
            SEVERITIES,
            "SEVERITY_NUMBER_",
            "severityNumber",
        ),
        severity_text=validators.text(
            _get(record, "severityText"),
            "severityText",
            max_length=MAX_SEVERITY_TEXT,
            longer="cut",
        ),
        body=None if body is None else any_value_json(body),
        time_ns=_integer(_get(record, "timeUnixNano") or 0, "timeUnixNano", UINT64),
        observed_ns=_integer(
            _get(record, "observedTimeUnixNano") or 0, "observedTimeUnixNano", UINT64
        ),
        trace_id=_hex_id(
            _get(record, "traceId"), parse_trace_id, "traceId", optional=True
        ),
        span_id=_hex_id(_get(record, "spanId"), parse_span_id, "spanId", optional=True),
        attributes=key_values_json(_get(record, "attributes")),
    )


def parse_traces_json(data: Any) -> Export:
    """Decode an ExportTraceServiceRequest in the OTLP JSON encoding."""
    return _parse_json(data, TRACES, _span_json)


def parse_logs_json(data: Any) -> Export:
    """Decode an ExportLogsServiceRequest in the OTLP JSON encoding."""
    return _parse_json(data, LOGS, _log_json)


def json_response(export: Export) -> dict[str, Any]:
    """Return the Export*ServiceResponse in the OTLP JSON encoding."""
    if not export.rejected:
        return {}
    return {
        "partialSuccess": {
            export.signal.rejected: export.rejected,
            "errorMessage": export.error_message,
        }
    }


# --- log records, whichever encoding ------------------------------------------------


def _level(severity: str, text: str) -> tuple[str, int]:
    """Return the store's level of an OTLP severity: its range's (WARN3 is WARNING),
    or the text's when the number is unspecified, or INFO when neither says."""
    if severity != SEVERITIES[0]:
        return logs.parse_level(severity.rstrip("234"))
    return logs.parse_level(text if text.strip().upper() in logs.LEVELS else "INFO")


def _log_line(
    *,
    service: str,
    scope_name: Any,
    severity: str,
    severity_text: str,
    body: Any,
    time_ns: int,
    observed_ns: int,
    trace_id: str,
    span_id: str,
    attributes: dict[str, Any],
) -> logs.LogLine:
    """Return the LogLine of an OTLP log record, its fields decoded."""
    level, levelno = _level(severity, severity_text)
    extra = dict(attributes)
    if severity_text and severity_text.strip().upper() not in logs.LEVELS:
        extra["severity_text"] = severity_text  # what no level of ours says
    if trace_id:
        extra["trace_id"] = trace_id
    if span_id:
        extra["span_id"] = span_id
    # The time it happened; else when it was seen (by a collector); else now.
    timestamp = None
    if time_ns:
        timestamp = time_from_ns(check_time_ns(time_ns, "timeUnixNano"))
    elif observed_ns:
        timestamp = time_from_ns(check_time_ns(observed_ns, "observedTimeUnixNano"))
    if not isinstance(body, str):
        body = "" if body is None else json.dumps(body, ensure_ascii=False)
    return logs.make_line(
        level=level,
        levelno=levelno,
        message=body,
        logger=_cut(scope_name, "scope name", "logger"),
        app_id=_cut(service, "service.name", "app_id"),
        timestamp=timestamp,
        extra=extra,
    )


def _cut(value: Any, where: str, column: str) -> str:
    """Return text cut to what the LogRecord column holds."""
    length = LogRecord._meta.get_field(column).max_length
    return validators.text(value, where, max_length=length, longer="cut")


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


def _bytes_id(raw: bytes, size: int, where: str, *, optional: bool = False) -> str:
    if optional and not raw:
        return ""
    if len(raw) != size:
        raise PayloadError(f"{where} must be {size} bytes, not {len(raw)}")
    if not any(raw):
        if optional:
            return ""
        raise PayloadError(f"{where} must not be all zeros")
    return raw.hex()


def _parse_protobuf(
    body: bytes, signal: Signal, decode: Callable[[Any, str, Any], Any]
) -> Export:
    """Decode an export request in the protobuf encoding, item by item."""
    # Imported here: only protobuf exports pay for loading protobuf.
    from google.protobuf.message import DecodeError

    message = getattr(importlib.import_module(signal.proto_module), signal.request)
    try:
        request = message.FromString(body)
    except DecodeError as exc:
        raise PayloadError(f"the body is not an {signal.request}: {exc}") from None
    resources, scopes, items = map(
        _snake, (signal.resources, signal.scopes, signal.items)
    )
    export = Export(signal)
    seen = 0
    for r, resource_group in enumerate(getattr(request, resources)):
        try:
            attributes = _key_values_proto(resource_group.resource.attributes)
        except PayloadError as exc:
            raise PayloadError(f"{resources}[{r}].resource: {exc}") from None
        service = _service(attributes)
        for s, scope_group in enumerate(getattr(resource_group, scopes)):
            seen += len(getattr(scope_group, items))
            export.check_size(seen)
            for n, item in enumerate(getattr(scope_group, items)):
                try:
                    export.items.append(decode(item, service, scope_group))
                except PayloadError as exc:
                    export.reject(f"{resources}[{r}].{scopes}[{s}].{items}[{n}]", exc)
    return export


def _span_proto(span, service: str, scope_spans) -> SpanIn:
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
        parent_span_id=_bytes_id(
            span.parent_span_id, 8, "parent_span_id", optional=True
        ),
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


def _log_proto(record, service: str, scope_logs) -> logs.LogLine:
    number = record.severity_number
    return _log_line(
        service=service,
        scope_name=scope_logs.scope.name,
        severity=SEVERITIES[number if 0 <= number < len(SEVERITIES) else 0],
        severity_text=validators.text(
            record.severity_text,
            "severity_text",
            max_length=MAX_SEVERITY_TEXT,
            longer="cut",
        ),
        body=_any_value_proto(record.body) if record.HasField("body") else None,
        time_ns=record.time_unix_nano,
        observed_ns=record.observed_time_unix_nano,
        trace_id=_bytes_id(record.trace_id, 16, "trace_id", optional=True),
        span_id=_bytes_id(record.span_id, 8, "span_id", optional=True),
        attributes=_key_values_proto(record.attributes),
    )


def parse_traces_protobuf(body: bytes) -> Export:
    """Decode an ExportTraceServiceRequest in the protobuf encoding."""
    return _parse_protobuf(body, TRACES, _span_proto)


def parse_logs_protobuf(body: bytes) -> Export:
    """Decode an ExportLogsServiceRequest in the protobuf encoding."""
    return _parse_protobuf(body, LOGS, _log_proto)


# The gRPC status code of each HTTP status an export can get (OTLP/HTTP answers
# errors with a google.rpc.Status in the request's own encoding).
GRPC_CODES = {400: 3, 401: 16, 403: 7, 405: 12, 413: 8, 415: 3, 429: 8, 503: 14}


def status_protobuf(http_status: int, message: str) -> bytes:
    """Return a google.rpc.Status {code, message}, serialized (by hand: 2 fields)."""
    code = GRPC_CODES.get(http_status, 2)  # 2: UNKNOWN
    return b"\x08" + _varint(code) + _text_field(2, message)


def protobuf_response(export: Export) -> bytes:
    """Return the Export*ServiceResponse, serialized by hand: each signal's is the
    same message on the wire, partial_success (1) {rejected (1), error_message (2)}.
    """
    if not export.rejected:
        return b""
    partial = b"\x08" + _varint(export.rejected) + _text_field(2, export.error_message)
    return b"\x0a" + _varint(len(partial)) + partial


def _text_field(number: int, text: str) -> bytes:
    encoded = text.encode("utf-8", "replace")
    return _varint(number << 3 | 2) + _varint(len(encoded)) + encoded


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)

"""What the OpenAPI schema cannot learn from the views (core.schema describes those).

The lean-lane POSTs are served before Django, and some views' bodies are richer
than a serializer says (the OTLP exports, a list of spans or one service's spans):
this adds both to the schema, each body and each lean answer a named component, so
that a client generator (or schemathesis, tests/test_schema.py) sends what the
endpoints expect. The other bodies and answers are the views' serializers.
"""

from __future__ import annotations

from applications.api.serializers import APP_ID_PATTERN
from core import labels
from core.schema import ERROR, REFUSALS

# The bodies the write endpoints take, so that a client generator (or schemathesis)
# sends what they expect and then what they must refuse. The views check more than
# this says (lengths after trimming, metadata size and depth, NUL characters).
TEXT = {"type": "string"}
APPLICATION = {
    "type": "object",
    "properties": {
        "app_id": {"type": "string", "pattern": f"^{APP_ID_PATTERN.pattern}$"},
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "router_type": {"type": "string", "maxLength": 100},
        "version": {"type": "string", "maxLength": 64},
        "metadata": {
            "type": "object",
            "description": "labels: taken as the app's labels when the body has "
            "none and they are valid labels (upstream clients send only metadata)",
        },
        "labels": {
            "type": "object",
            "description": "the operator's {name: value} (names: letters, digits "
            "and _, not starting with a digit), replacing the app's; none: kept",
            "additionalProperties": {
                "type": "string",
                "maxLength": labels.LONGEST_VALUE,
            },
            "maxProperties": labels.MOST,
        },
    },
}
REQUEST = {
    "type": "object",
    "properties": {
        "node": {"type": "string", "maxLength": 300},
        "model": {"type": "string", "maxLength": 200},
        "latency_ms": {"type": "number", "minimum": 0},
        "ok": {"type": "boolean"},
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "timestamp": {"type": "number"},
        "app_id": TEXT,
        "error": TEXT,
    },
    "required": ["latency_ms"],
}
SPAN = {
    "type": "object",
    "properties": {
        "trace_id": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
        "span_id": {"type": "string", "pattern": "^[0-9a-fA-F]{16}$"},
        "parent_span_id": {"type": "string", "nullable": True},
        "name": {"type": "string", "minLength": 1},
        "start": {"type": "number", "description": "epoch seconds"},
        "end": {"type": "number"},
        "kind": {
            "type": "string",
            "enum": [
                "unspecified",
                "internal",
                "server",
                "client",
                "producer",
                "consumer",
            ],
        },
        "attributes": {"type": "object"},
        "status": {"type": "string", "enum": ["unset", "ok", "error"]},
        "status_message": TEXT,
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": TEXT,
                    "timestamp": {"type": "number"},
                    "attributes": {"type": "object"},
                },
            },
        },
        "service": TEXT,
    },
    "required": ["trace_id", "span_id", "name", "start", "end"],
}
# Each write body a component of its own, by name: (path, method) -> (name, schema).
BODIES = {
    ("/api/applications/register", "post"): (
        "Registration",
        {
            **APPLICATION,
            "required": ["name"],
            "description": "app_id is made (a UUID) when there is none",
        },
    ),
    ("/api/applications/heartbeat", "post"): (
        "Heartbeat",
        {**APPLICATION, "required": ["app_id"]},
    ),
    ("/api/activity", "post"): (
        "RequestReport",
        {
            "oneOf": [
                REQUEST,
                {
                    "type": "object",
                    "properties": {
                        "app_id": TEXT,
                        "requests": {"type": "array", "items": REQUEST},
                    },
                    "required": ["requests"],
                },
            ]
        },
    ),
    ("/api/logs", "post"): (
        "LogLines",
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "timestamp": {"oneOf": [{"type": "number"}, TEXT]},
                    "level": {"oneOf": [TEXT, {"type": "integer"}]},
                    "logger": TEXT,
                    "message": TEXT,
                    "app_id": TEXT,
                    "extra": {"type": "object"},
                },
                "required": ["message"],
            },
        },
    ),
    ("/api/traces", "post"): (
        "Spans",
        {
            "oneOf": [
                {"type": "array", "items": SPAN},
                {
                    "type": "object",
                    "description": "spans of one service, named once",
                    "properties": {
                        "service": TEXT,
                        "spans": {"type": "array", "items": SPAN},
                    },
                    "required": ["spans"],
                },
            ]
        },
    ),
    ("/v1/traces", "post"): (
        "OtlpTraceExport",
        {
            "type": "object",
            "properties": {
                "resourceSpans": {"type": "array", "items": {"type": "object"}}
            },
        },
    ),
    ("/v1/logs", "post"): (
        "OtlpLogExport",
        {
            "type": "object",
            "properties": {
                "resourceLogs": {"type": "array", "items": {"type": "object"}}
            },
        },
    ),
}

# What the lean lane and the OTLP receiver answer when they took the body.
ACCEPTED = {
    "type": "object",
    "properties": {"status": TEXT, "accepted": {"type": "integer", "minimum": 0}},
    "required": ["status", "accepted"],
}
ANSWERS = {
    "/api/applications/register": (
        "Registered",
        {
            "type": "object",
            "properties": {
                "status": TEXT,
                "app_id": TEXT,
                "created": {
                    "type": "boolean",
                    "description": "new to the registry (false: known, updated)",
                },
            },
            "required": ["status", "app_id", "created"],
        },
    ),
    "/api/applications/heartbeat": (
        "HeartbeatAnswer",
        {
            "type": "object",
            "properties": {
                "status": TEXT,
                "app_id": TEXT,
                "registered": {
                    "type": "boolean",
                    "description": "the heartbeat registered an app it did not know",
                },
            },
            "required": ["status", "app_id", "registered"],
        },
    ),
    "/api/activity": ("RequestsAccepted", ACCEPTED),
    "/api/logs": ("LinesAccepted", ACCEPTED),
    "/v1/traces": (
        "OtlpTraceAnswer",
        {
            "type": "object",
            "description": "{} when every span was taken (OTLP's "
            "ExportTraceServiceResponse)",
            "properties": {
                "partialSuccess": {
                    "type": "object",
                    "properties": {
                        "rejectedSpans": {"type": "integer"},
                        "errorMessage": TEXT,
                    },
                }
            },
        },
    ),
    "/v1/logs": (
        "OtlpLogAnswer",
        {
            "type": "object",
            "description": "{} when every record was taken (OTLP's "
            "ExportLogsServiceResponse)",
            "properties": {
                "partialSuccess": {
                    "type": "object",
                    "properties": {
                        "rejectedLogRecords": {"type": "integer"},
                        "errorMessage": TEXT,
                    },
                }
            },
        },
    ),
}

ALSO_PROTOBUF = "(also application/x-protobuf)"
OTLP = {
    "/v1/traces": f"an OpenTelemetry OTLP/HTTP trace export {ALSO_PROTOBUF}",
    "/v1/logs": f"an OpenTelemetry OTLP/HTTP log export {ALSO_PROTOBUF}",
}
LEAN_LANE = {
    "/api/applications/register": "an application registers, or says it again",
    "/api/applications/heartbeat": "an application's heartbeat (metadata merges)",
    "/api/activity": "requests a router made",
    "/api/logs": "log lines",
}


def add_lean_lane(result, generator, request, public):
    """Add the POSTs served before Django (core.lean.router.LeanRouter) and the
    OTLP receiver, and say what every write endpoint's body looks like: each
    body and each of those answers a component of the schema."""
    paths = result.setdefault("paths", {})
    components = result.setdefault("components", {}).setdefault("schemas", {})
    for path, summary in {**LEAN_LANE, **OTLP}.items():
        name, answer = ANSWERS[path]
        components[name] = answer
        responses = {"200": {"description": "stored", "content": _json(_ref(name))}}
        for status, text in REFUSALS.items():
            responses[status] = {"description": text, "content": _json(ERROR)}
        paths.setdefault(path, {})["post"] = {
            "operationId": "lean_" + path.strip("/").replace("/", "_"),
            "summary": summary,
            "requestBody": {"content": _json({}), "required": True},
            "responses": responses,
        }
    for (path, method), (name, body) in BODIES.items():
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            components[name] = body
            operation["requestBody"] = {"content": _json(_ref(name)), "required": True}
    return result


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def drop_slash_aliases(endpoints):
    """Describe /api/alerts once, not also its alias /api/alerts/.

    A list served at both spellings (a bare path and its app's include) would
    otherwise be two operations with one operationId (drf-spectacular W001).
    """
    bare = {(path, method) for path, _, method, _ in endpoints}
    return [
        endpoint
        for endpoint in endpoints
        if not (
            endpoint[0].endswith("/") and (endpoint[0].rstrip("/"), endpoint[2]) in bare
        )
    ]

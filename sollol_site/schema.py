"""The OpenAPI schema of the API (drf-spectacular), at /api/schema/.

The API's views validate their JSON by hand (sollol_site.jsonio) rather than with
DRF serializers, so the schema says what every one of them shares: a JSON object
in, a JSON object out, and `{"error": "..."}` with a 4xx status (or 503 while the
database is away) for anything refused. Query parameters are declared on the views
(`query_parameters`). The lean-lane endpoints, served before Django, are added by
`add_lean_lane`. schemathesis checks the running server against this schema
(tests/test_schema.py).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from applications.api.serializers import APP_ID_PATTERN

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
REFUSALS = {
    "400": "the request is malformed",
    "401": "a token is needed",
    "403": "the token is not valid, or a quota is full",
    "404": "no such thing",
    "405": "another method is needed",
    "408": "the body did not arrive in time",
    "409": "it conflicts with the configuration",
    "413": "the body is too large",
    "415": "the body is not in a content type taken here",
    "429": "too many writes from this client; see Retry-After",
    "503": "the database is unavailable, or too many writes wait; try again",
}


def query(name: str, type=OpenApiTypes.STR, description: str = "") -> OpenApiParameter:
    return OpenApiParameter(
        name, type, OpenApiParameter.QUERY, required=False, description=description
    )


class JsonApiSchema(AutoSchema):
    """Describe a hand-validated JSON APIView: object in, object or error out."""

    def get_operation_id(self):
        """One id per path and method: /api/network/nodes/{node_id} GET is
        get_network_nodes_node_id (the default gave list and detail one id)."""
        words = [w.strip("{}") for w in self.path.split("/") if w and w != "api"]
        return "_".join([self.method.lower(), *words]).replace("-", "_")

    def get_override_parameters(self):
        return [*super().get_override_parameters(), *self._view_parameters()]

    def _view_parameters(self):
        return list(getattr(self.view, "query_parameters", {}).get(self.method, []))

    def get_request_serializer(self):
        if self.method in ("POST", "PUT", "PATCH"):
            return OpenApiTypes.OBJECT
        return None

    def get_response_serializers(self):
        ok = "201" if self.method == "POST" else "200"
        responses = {
            "200": OpenApiResponse(OpenApiTypes.OBJECT, description="done"),
        }
        if ok == "201":
            responses["201"] = OpenApiResponse(OpenApiTypes.OBJECT, description="made")
        for status, text in REFUSALS.items():
            responses[status] = OpenApiResponse(ERROR, description=text)
        return responses


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
        "metadata": {"type": "object"},
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
        "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "span_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        "parent_span_id": {"type": "string", "nullable": True},
        "name": {"type": "string", "minLength": 1},
        "start": {"type": "number"},
        "end": {"type": "number"},
        "attributes": {"type": "object"},
        "status": {"type": "string", "enum": ["unset", "ok", "error"]},
        "service": TEXT,
    },
    "required": ["trace_id", "span_id", "name", "start", "end"],
}
BODIES = {
    ("/api/applications/register", "post"): {**APPLICATION, "required": ["name"]},
    ("/api/applications/heartbeat", "post"): {**APPLICATION, "required": ["app_id"]},
    ("/api/applications/unregister", "post"): {
        "type": "object",
        "properties": {"app_id": APPLICATION["properties"]["app_id"]},
        "required": ["app_id"],
    },
    ("/api/network/nodes", "post"): {
        "type": "object",
        "properties": {"url": TEXT},
        "required": ["url"],
    },
    ("/api/network/backends", "post"): {
        "type": "object",
        "properties": {"address": TEXT},
        "required": ["address"],
    },
    ("/api/activity", "post"): {
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
    ("/api/logs", "post"): {
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
    ("/api/traces", "post"): {"type": "array", "items": SPAN},
    ("/v1/traces", "post"): {
        "type": "object",
        "properties": {"resourceSpans": {"type": "array", "items": {"type": "object"}}},
    },
}

OTLP = "an OpenTelemetry OTLP/HTTP trace export (also application/x-protobuf)"
LEAN_LANE = {
    "/api/applications/heartbeat": "an application's heartbeat (metadata merges)",
    "/api/activity": "requests a router made",
    "/api/logs": "log lines",
}


def add_lean_lane(result, generator, request, public):
    """Add the POSTs served before Django (sollol_site.ingest.LeanRouter) and the
    OTLP receiver, and say what every write endpoint's body looks like."""
    paths = result.setdefault("paths", {})
    for path, summary in {**LEAN_LANE, "/v1/traces": OTLP}.items():
        responses = {
            "200": {"description": "stored", "content": _json({"type": "object"})}
        }
        for status, text in REFUSALS.items():
            responses[status] = {"description": text, "content": _json(ERROR)}
        paths.setdefault(path, {})["post"] = {
            "operationId": "lean_" + path.strip("/").replace("/", "_"),
            "summary": summary,
            "requestBody": {"content": _json({}), "required": True},
            "responses": responses,
        }
    for (path, method), body in BODIES.items():
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"content": _json(body), "required": True}
    return result


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}

"""The OpenAPI schema of the API (drf-spectacular), at /api/schema/.

The API's views validate their JSON by hand (core.jsonio) rather than with
DRF serializers, so the schema says what every one of them shares: a JSON object
in, a JSON object out, and `{"error": "..."}` with a 4xx status (or 503 while the
database is away) for anything refused. Query parameters are declared on the views
(`query_parameters`). The lean-lane endpoints, served before Django, and the
bodies of the write endpoints are added by sollol_site.schema.add_lean_lane.
schemathesis checks the running server against this schema (tests/test_schema.py).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

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

"""The OpenAPI schema of the API (drf-spectacular), at /api/schema/.

The API's views validate their JSON by hand (core.jsonio) and build their answers
by hand (fast at fleet scale); DRF serializers *describe* both: a view names them
per method in `responses` (the success answer; None: 204, no body) and
`request_bodies` (None: the method takes no body), and each becomes a component
of the schema. Every view shares `{"error": "..."}` with a 4xx status (or 503
while the database is away) for anything refused. Query parameters are declared
on the views (`query_parameters`). The lean-lane endpoints, served before Django,
and the bodies of the write endpoints are added by sollol_site.schema.add_lean_lane.
schemathesis checks the running server against this schema (tests/test_schema.py).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from core.labels import LONGEST_VALUE

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


class PageSerializer(serializers.Serializer):
    """The paging fields of a list's answer (core.pagination.Page.answer)."""

    total = serializers.IntegerField(help_text="in all, not just this page")
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


def label_map(help_text: str, **options) -> serializers.DictField:
    """A labels object (core.labels) or a selector of them, as the API shows it."""
    return serializers.DictField(
        child=serializers.CharField(max_length=LONGEST_VALUE),
        help_text=help_text,
        **options,
    )


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

    def map_parsers(self):
        # StrictJSONParser takes any Content-Type (to refuse what is not JSON with
        # a clear 400); what the endpoints take is JSON.
        return ["application/json"]

    def get_request_serializer(self):
        if self.method in ("POST", "PUT", "PATCH"):
            return getattr(self.view, "request_bodies", {}).get(
                self.method, OpenApiTypes.OBJECT
            )
        return None

    def get_response_serializers(self):
        # What a success answers: the view's serializer for this method (a
        # component of the schema), nothing (None: 204), or just "an object".
        body = getattr(self.view, "responses", {}).get(self.method, OpenApiTypes.OBJECT)
        if body is None:
            responses = {"204": OpenApiResponse(description="done; no body")}
        else:
            responses = {"200": OpenApiResponse(body, description="done")}
            if self.method == "POST":
                responses["201"] = OpenApiResponse(body, description="made")
        for status, text in REFUSALS.items():
            responses[status] = OpenApiResponse(ERROR, description=text)
        return responses

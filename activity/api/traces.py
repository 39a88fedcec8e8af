"""Traces over HTTP: native ingest and reads (REST lane).

OTLP/HTTP export (POST /v1/traces) is activity.api.otlp.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import traces
from core.schema import query
from core.validators import query_number

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class TraceListView(APIView):
    query_parameters = {
        "GET": [
            query("service"),
            query("min_duration_ms", OpenApiTypes.NUMBER),
            query("limit", OpenApiTypes.INT),
        ]
    }

    def get(self, request):
        query = request.query_params
        limit = int(
            query_number(
                query.get("limit"),
                "limit",
                default=DEFAULT_LIMIT,
                low=0,
                high=MAX_LIMIT,
            )
        )
        service = query.get("service") or None
        found = traces.recent_traces(
            service=service,
            min_duration_ms=query_number(
                query.get("min_duration_ms"),
                "min_duration_ms",
                default=None,
                low=0,
                high=1e12,
            ),
            limit=limit,
        )
        return Response(
            {"traces": [traces.trace_data(trace) for trace in found], "limit": limit}
        )

    def post(self, request):
        spans = traces.parse_native(request.data)
        accepted = traces.ingest_spans(spans, now=timezone.now())
        return Response({"status": "ok", "accepted": accepted})


class TraceDetailView(APIView):
    def get(self, request, trace_id: str):
        trace_id = traces.parse_trace_id(trace_id)
        tree = traces.trace_tree(trace_id)
        if tree is None:
            raise NotFound(f"no trace with trace_id {trace_id}")
        return Response(tree)

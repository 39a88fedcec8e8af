"""Traces over HTTP: native ingest and reads (REST lane).

OTLP/HTTP export (POST /v1/traces) is activity.api.otlp.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import traces
from activity.api import schemas
from core import ratelimit
from core.pagination import page_of, page_parameters
from core.schema import query
from core.validators import query_number

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class TraceListView(APIView):
    """GET /api/traces: a page of the traces, newest first (by start), of one
    service or slower than min_duration_ms when asked. POST: native spans."""

    query_parameters = {
        "GET": [
            query("service", description="only traces with a span of this service"),
            query(
                "min_duration_ms",
                OpenApiTypes.NUMBER,
                "only traces that took at least this long",
            ),
            *page_parameters(DEFAULT_LIMIT, MAX_LIMIT),
        ]
    }
    responses = {
        "GET": schemas.TraceListSerializer,
        "POST": schemas.SpansAcceptedSerializer,
    }

    def get(self, request):
        params = request.query_params
        page = page_of(params, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
        found = traces.matching_traces(
            service=params.get("service") or None,
            min_duration_ms=query_number(
                params.get("min_duration_ms"),
                "min_duration_ms",
                default=None,
                low=0,
                high=1e12,
            ),
        )
        listed = [traces.trace_data(trace) for trace in page.of(found)]
        return Response(page.answer("traces", listed, found.count()))

    def post(self, request):
        spans = traces.parse_native(request.data)
        if refused := ratelimit.report_refusal(span.service for span in spans):
            wait, why = refused
            raise Throttled(wait=wait, detail=why)
        accepted = traces.ingest_spans(spans, now=timezone.now())
        return Response({"status": "ok", "accepted": accepted})


class TraceDetailView(APIView):
    responses = {"GET": schemas.TraceTreeSerializer}

    def get(self, request, trace_id: str):
        trace_id = traces.parse_trace_id(trace_id)
        tree = traces.trace_tree(trace_id)
        if tree is None:
            raise NotFound(f"no trace with trace_id {trace_id}")
        return Response(tree)

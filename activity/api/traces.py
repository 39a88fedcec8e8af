"""Traces over HTTP: native ingest and reads (REST lane), OTLP/HTTP export (plain view).

POST /v1/traces is a plain Django view, not DRF: it reads protobuf as well as JSON,
may be gzipped, and must answer in the encoding it was asked in.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import otlp, traces
from core import jsonio
from core.parsers import too_large_message
from core.schema import query
from core.tokens import check_bearer
from core.validators import query_number

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
PROTOBUF = "application/x-protobuf"


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


def _error(status: int, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@csrf_exempt
def otlp_traces(request: HttpRequest) -> HttpResponse:
    """Take an OTLP/HTTP trace export (JSON or protobuf, maybe gzipped)."""
    content_type = (request.content_type or "").lower()
    response = _otlp_export(request, content_type)
    if response.status_code >= 400 and content_type == PROTOBUF:
        # The exporter reads errors in the encoding it sent: a google.rpc.Status.
        message = json.loads(response.content)["error"]
        encoded = HttpResponse(
            otlp.status_protobuf(response.status_code, message),
            content_type=PROTOBUF,
            status=response.status_code,
        )
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):
            if name in response:
                encoded[name] = response[name]
        return encoded
    return response


def _otlp_export(request: HttpRequest, content_type: str) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "use POST", Allow="POST")
    refusal = check_bearer(request.headers.get("Authorization"))
    if refusal is not None:
        status, message = refusal
        if status == 401:
            return _error(status, message, WWW_Authenticate="Bearer")
        return _error(status, message)
    if content_type not in ("application/json", PROTOBUF):
        return _error(415, f"Content-Type must be application/json or {PROTOBUF}")
    try:
        body = otlp.inflate(
            request.body,
            request.headers.get("Content-Encoding"),
            limit=settings.SOLLOL_MAX_DECOMPRESSED_BYTES,
        )
        if content_type == PROTOBUF:
            export = otlp.parse_protobuf(body)
        else:
            export = otlp.parse_json(jsonio.loads(body))
        traces.ingest_spans(export.spans, now=timezone.now())
    except RequestDataTooBig:
        return _error(413, too_large_message(request.path))
    except otlp.BodyTooLarge as exc:
        return _error(413, str(exc))
    except otlp.UnsupportedEncoding as exc:
        return _error(415, str(exc))
    except jsonio.PayloadError as exc:
        return _error(400, str(exc))
    except (OperationalError, InterfaceError) as exc:
        logger.warning("database unavailable: %s", exc)
        return _error(503, "the database is unavailable; try again shortly")
    if content_type == PROTOBUF:
        return HttpResponse(otlp.protobuf_response(export), content_type=PROTOBUF)
    return JsonResponse(otlp.json_response(export))

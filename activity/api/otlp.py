"""The OTLP/HTTP receiver: POST /v1/traces and POST /v1/logs (see activity.otlp).

Plain Django views, not DRF: they read protobuf as well as JSON, may be gzipped,
and must answer in the encoding they were asked in. Spans are stored as
POST /api/traces stores them; log records go to the writer POST /api/logs hands its
lines to, so they are stored, announced and limited as those are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from activity import logs, otlp, traces
from activity.api.ingest import log_writer
from core import jsonio, ratelimit
from core.lean.writer import WriterBusy, WriterUnavailable
from core.parsers import too_large_message
from core.tokens import check_bearer

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
UNAVAILABLE = "the database is unavailable; try again shortly"


def _store_spans(spans: list[traces.SpanIn]) -> None:
    traces.ingest_spans(spans, now=timezone.now())


def _store_logs(lines: list[logs.LogLine]) -> None:
    """Hand lines to the writer POST /api/logs hands its lines to (group commit, a
    bounded queue: WriterBusy); return once they are committed."""
    if lines:
        async_to_sync(log_writer().submit)(lines)


@dataclass(frozen=True)
class Receiver:
    """One signal's decoders, and the function that stores its items."""

    parse_json: Callable[[Any], otlp.Export]
    parse_protobuf: Callable[[bytes], otlp.Export]
    store: Callable[[list], None]
    app: Callable[[Any], str]  # the application an item is for (its rate limit)


TRACES = Receiver(
    otlp.parse_traces_json,
    otlp.parse_traces_protobuf,
    _store_spans,
    lambda span: span.service,
)
LOGS = Receiver(
    otlp.parse_logs_json,
    otlp.parse_logs_protobuf,
    _store_logs,
    lambda line: line.app_id,
)


@csrf_exempt
def otlp_traces(request: HttpRequest) -> HttpResponse:
    """Take an OTLP/HTTP trace export (JSON or protobuf, maybe gzipped)."""
    return _receive(request, TRACES)


@csrf_exempt
def otlp_logs(request: HttpRequest) -> HttpResponse:
    """Take an OTLP/HTTP log export (JSON or protobuf, maybe gzipped)."""
    return _receive(request, LOGS)


def _receive(request: HttpRequest, receiver: Receiver) -> HttpResponse:
    content_type = (request.content_type or "").lower()
    response = _export(request, content_type, receiver)
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


def _export(
    request: HttpRequest, content_type: str, receiver: Receiver
) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "use POST", Allow="POST")
    refusal = check_bearer(
        request.headers.get("Authorization"), request.META.get("REMOTE_ADDR")
    )
    if refusal is not None:
        if refusal.status == 401:
            return _error(401, refusal.message, WWW_Authenticate="Bearer")
        if refusal.status == 429:
            return _too_many(refusal.retry_after, refusal.message)
        return _error(refusal.status, refusal.message)
    if content_type not in ("application/json", PROTOBUF):
        return _error(415, f"Content-Type must be application/json or {PROTOBUF}")
    try:
        body = otlp.inflate(
            request.body,
            request.headers.get("Content-Encoding"),
            limit=settings.SOLLOL_MAX_DECOMPRESSED_BYTES,
        )
        if content_type == PROTOBUF:
            export = receiver.parse_protobuf(body)
        else:
            export = receiver.parse_json(jsonio.loads(body))
        if refused := ratelimit.report_refusal(map(receiver.app, export.items)):
            return _too_many(*refused)
        receiver.store(export.items)
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
        return _error(503, UNAVAILABLE)
    except WriterUnavailable:
        return _error(503, UNAVAILABLE)
    except WriterBusy:
        return _error(
            503, "too many writes are waiting; try again shortly", Retry_After="1"
        )
    if content_type == PROTOBUF:
        return HttpResponse(otlp.protobuf_response(export), content_type=PROTOBUF)
    return JsonResponse(otlp.json_response(export))


def _too_many(wait: float, why: str) -> JsonResponse:
    return _error(429, why, Retry_After=ratelimit.retry_after(wait))


def _error(status: int, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response

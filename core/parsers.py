"""The one JSON parser of the REST lane (kept apart: DRF imports it at start-up)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser

from core import jsonio


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request body is too large"
    default_code = "too_large"


# Trace and OTLP log exports come in batches (an OpenTelemetry SDK sends up to 512
# spans or records at once, uncompressed by default): they get a limit of their own.
TRACE_PATHS = frozenset({"/v1/traces", "/api/traces", "/v1/logs"})


def body_limit(path: str) -> int:
    """Return the largest request body accepted on path, in bytes."""
    if path.rstrip("/") in TRACE_PATHS:
        return settings.SOLLOL_MAX_TRACE_BODY_BYTES
    return settings.SOLLOL_MAX_BODY_BYTES


def too_large_message(path: str = "") -> str:
    return f"request body is larger than {body_limit(path)} bytes"


class StrictJSONParser(BaseParser):
    """JSON that can be stored anywhere: no NaN, no absurd nesting, bounded size."""

    # Every body of this API is JSON, whatever Content-Type a client forgot to set.
    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        path = request.path if request is not None else ""
        limit = body_limit(path)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(too_large_message(path))
        try:
            return jsonio.loads(body)
        except jsonio.PayloadError as exc:
            raise exceptions.ParseError(str(exc)) from None

"""What every JSON endpoint shares: strict parsing, JSON errors, body limits."""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import exception_handler

from sollol_site import jsonio


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request body is too large"
    default_code = "too_large"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "the database is unavailable; try again shortly"
    default_code = "unavailable"


def too_large_message() -> str:
    return f"request body is larger than {settings.SOLLOL_MAX_BODY_BYTES} bytes"


class StrictJSONParser(BaseParser):
    """JSON that can be stored anywhere: no NaN, no absurd nesting, bounded size."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.SOLLOL_MAX_BODY_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(too_large_message())
        try:
            return jsonio.loads(body)
        except jsonio.PayloadError as exc:
            raise exceptions.ParseError(str(exc)) from None


def json_exception_handler(exc, context):
    """Answer every API error as {"error": "..."} with the right 4xx or 5xx."""
    if isinstance(exc, jsonio.PayloadError):
        return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        detail = detail["detail"]
    if isinstance(detail, list) and len(detail) == 1:
        detail = detail[0]
    response.data = {"error": str(detail) if not isinstance(detail, dict) else detail}
    return response

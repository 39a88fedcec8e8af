"""What every JSON endpoint shares: errors as {"error": "..."} with the right status."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core import jsonio


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
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = "Bearer"
    return response

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpResponseRedirect, JsonResponse
from django.utils.http import urlencode

from core.parsers import too_large_message
from core.tokens import may_read

logger = logging.getLogger(__name__)


class JsonErrorMiddleware:
    """Turn failures under /api/ into JSON errors instead of HTML pages."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/") and any(
            "\x00" in value for values in request.GET.lists() for value in values[1]
        ):
            # Filters go into SQL; PostgreSQL refuses NUL in text with an error.
            return JsonResponse(
                {"error": "query parameters must not contain NUL characters"},
                status=400,
            )
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"error": too_large_message(request.path)}, status=413)
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable: %s", exception)
            return JsonResponse(
                {"error": "the database is unavailable; try again shortly"}, status=503
            )
        if isinstance(exception, DatabaseError):
            logger.exception("database error on %s", request.path)
        return None


# Paths that handle their own sign-in.
OWN_LOGINS = ("/admin/", "/login/")


class ReadAccessMiddleware:
    """With SOLLOL_READ_TOKEN set, reads need a token or a login (auth.may_read).

    The sign-in page and the admin (its own staff-only login) stay open, as do
    static files (no data in them).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in ("GET", "HEAD", "OPTIONS") and not request.path.startswith(
            OWN_LOGINS
        ):
            if not may_read(request.headers.get("Authorization"), request.user):
                return self._refuse(request)
        return self.get_response(request)

    @staticmethod
    def _refuse(request):
        if request.path == "/":
            return HttpResponseRedirect(
                settings.LOGIN_URL + "?" + urlencode({"next": "/"})
            )
        response = JsonResponse(
            {"error": "reading this dashboard needs Authorization: Bearer <token>"},
            status=401,
        )
        response["WWW-Authenticate"] = "Bearer"
        return response

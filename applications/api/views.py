from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework import status
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from activity.metrics import parse_window
from applications import services
from applications.api.serializers import (
    application_data,
    parse_app_id,
    parse_report,
)
from applications.availability import availability
from applications.choices import AppStatus
from applications.models import Application
from core.schema import query
from core.tokens import AppWriteAllowed, token_owner
from core.validators import query_int

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_OFFSET = 10**9  # past any fleet; a bigger one overflowed the SQL (500)


class ApplicationListView(APIView):
    query_parameters = {
        "GET": [
            query("limit", OpenApiTypes.INT, f"page size, at most {MAX_PAGE}"),
            query("offset", OpenApiTypes.INT),
            query("status", description="active or stale"),
            query("router_type"),
            query(
                "availability",
                description="a window (1h, 24h, 7d): each app's share of it active, "
                "from its events (as long as the event log keeps them)",
            ),
        ]
    }

    def get(self, request):
        now = timezone.now()
        query = request.query_params
        limit = query_int(
            query.get("limit"), "limit", default=DEFAULT_PAGE, low=0, high=MAX_PAGE
        )
        offset = query_int(
            query.get("offset"), "offset", default=0, low=0, high=MAX_OFFSET
        )
        wanted = query.get("status")
        apps = Application.objects.all()
        if wanted == AppStatus.ACTIVE:
            apps = apps.filter(stale_after__gt=now)
        elif wanted == AppStatus.STALE:
            apps = apps.filter(stale_after__lte=now)
        elif wanted:
            raise ParseError("status must be active or stale")
        router_type = query.get("router_type")
        if router_type:
            apps = apps.filter(router_type=router_type)
        counts = apps.aggregate(
            total=Count("pk"), active=Count("pk", filter=Q(stale_after__gt=now))
        )
        page = list(apps.order_by("name", "app_id")[offset : offset + limit])
        listed = [application_data(app, now) for app in page]
        if query.get("availability"):
            window = parse_window(
                query.get("availability"), maximum=settings.SOLLOL_EVENT_RETENTION_AGE
            )
            shares = availability(page, window=window, now=now)
            for data in listed:
                data["availability"] = shares[data["app_id"]]
        return Response(
            {
                "applications": listed,
                "total": counts["total"],
                "active": counts["active"],
                "stale": counts["total"] - counts["active"],
                "limit": limit,
                "offset": offset,
            }
        )


class ApplicationDetailView(APIView):
    def get(self, request, app_id: str):
        app = Application.objects.filter(pk=app_id).first()
        if app is None:
            raise NotFound(f"no application with app_id {app_id}")
        return Response(application_data(app, timezone.now()))


class RegisterView(APIView):
    permission_classes = [AppWriteAllowed]

    def post(self, request):
        owner = token_owner(request.headers.get("Authorization"))
        report = parse_report(request.data, registering=True, owner=owner)
        try:
            app, created = services.register_application(report, now=timezone.now())
        except services.TooManyApplications as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(
            {"status": "ok", "app_id": app.app_id, "created": created},
            status=status.HTTP_200_OK,
        )


class UnregisterView(APIView):
    """Unregister by path (/<app_id>/unregister) or by body ({"app_id": ...})."""

    permission_classes = [AppWriteAllowed]

    def post(self, request, app_id: str | None = None):
        if app_id is None:
            body = request.data
            if not isinstance(body, dict) or "app_id" not in body:
                raise ParseError('the body must be {"app_id": "..."}')
            app_id = parse_app_id(body["app_id"])
        if services.unregister_application(app_id, now=timezone.now()) is None:
            raise NotFound(f"no application with app_id {app_id}")
        return Response({"status": "ok", "app_id": app_id})

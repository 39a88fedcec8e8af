from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from activity.metrics import parse_window
from applications import services
from applications.api import schemas
from applications.api.serializers import (
    application_data,
    parse_app_id,
)
from applications.availability import availability
from applications.choices import AppStatus
from applications.models import Application
from core.pagination import page_of, page_parameters
from core.schema import query
from core.tokens import AppWriteAllowed

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class ApplicationListView(APIView):
    query_parameters = {
        "GET": [
            *page_parameters(DEFAULT_PAGE, MAX_PAGE),
            query("status", description="active or stale"),
            query("router_type"),
            query(
                "availability",
                description="a window (1h, 24h, 7d): each app's share of it active, "
                "from its events (as long as the event log keeps them)",
            ),
        ]
    }
    responses = {"GET": schemas.ApplicationListSerializer}

    def get(self, request):
        now = timezone.now()
        query = request.query_params
        page = page_of(query, default=DEFAULT_PAGE, maximum=MAX_PAGE)
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
        shown = list(page.of(apps.order_by("name", "app_id")))
        listed = [application_data(app, now) for app in shown]
        if query.get("availability"):
            window = parse_window(
                query.get("availability"), maximum=settings.SOLLOL_EVENT_RETENTION_AGE
            )
            shares = availability(shown, window=window, now=now)
            for data in listed:
                data["availability"] = shares[data["app_id"]]
        return Response(
            page.answer(
                "applications",
                listed,
                counts["total"],
                active=counts["active"],
                stale=counts["total"] - counts["active"],
            )
        )


class ApplicationDetailView(APIView):
    responses = {"GET": schemas.ApplicationSerializer}

    def get(self, request, app_id: str):
        app = Application.objects.filter(pk=app_id).first()
        if app is None:
            raise NotFound(f"no application with app_id {app_id}")
        return Response(application_data(app, timezone.now()))


class UnregisterView(APIView):
    """Unregister by body ({"app_id": ...}) or, as UnregisterByIdView, by path.

    The server's lean lane answers these POSTs first, through the applications'
    group-commit writer (applications.api.ingest); this view describes them in
    the schema and answers where the application runs without that lane.
    """

    permission_classes = [AppWriteAllowed]
    request_bodies = {"POST": schemas.UnregisterSerializer}
    responses = {"POST": schemas.UnregisteredSerializer}

    def post(self, request, app_id: str | None = None):
        if app_id is None:
            body = request.data
            if not isinstance(body, dict) or "app_id" not in body:
                raise ParseError('the body must be {"app_id": "..."}')
            app_id = parse_app_id(body["app_id"])
        if services.unregister_application(app_id, now=timezone.now()) is None:
            raise NotFound(f"no application with app_id {app_id}")
        return Response({"status": "ok", "app_id": app_id})


class UnregisterByIdView(UnregisterView):
    """POST /<app_id>/unregister: the application is in the path, not a body."""

    request_bodies = {"POST": None}

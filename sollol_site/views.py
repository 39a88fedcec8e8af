from __future__ import annotations

from django.shortcuts import render
from django.utils import timezone
from django.views import defaults

from applications.api.serializers import application_data
from applications.models import Application

page_not_found = defaults.page_not_found
server_error = defaults.server_error


def index(request):
    """Render the dashboard with the current state, so the page is never empty."""
    now = timezone.now()
    applications = [
        application_data(app, now) for app in Application.objects.order_by("name")[:200]
    ]
    return render(
        request,
        "dashboard/index.html",
        {"applications": applications, "total": Application.objects.count()},
    )

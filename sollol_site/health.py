"""GET /api/network/health: the network's health, with the applications using it.

The network knows no application and the registry no node: the roof joins their
answers, for the API and for the page's first paint alike.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from applications.models import Application
from network.health import network_health
from sollol_site import schemas


def fleet_health(*, now: dt.datetime) -> dict[str, Any]:
    """Return network_health with the count of applications heard from in time."""
    return {
        **network_health(now=now),
        "applications_active": Application.objects.filter(stale_after__gt=now).count(),
    }


class HealthView(APIView):
    responses = {"GET": schemas.HealthSerializer}

    def get(self, request):
        return Response(fleet_health(now=timezone.now()))

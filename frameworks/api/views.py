"""GET /api/ray/metrics and /api/dask/metrics: the newest snapshot, never a live call.

The clusters are contacted only by the beat task (frameworks.tasks); these views
read what it stored, so they answer within milliseconds however the clusters are.
"""

from __future__ import annotations

from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from frameworks import services
from frameworks.api import schemas
from frameworks.choices import Kind


class FrameworkMetricsView(APIView):
    kind: str = ""

    def get(self, request):
        return Response(
            services.metrics(self.kind, now=timezone.now(), host=request.get_host())
        )


class RayMetricsView(FrameworkMetricsView):
    kind = Kind.RAY
    responses = {"GET": schemas.RayMetricsSerializer}


class DaskMetricsView(FrameworkMetricsView):
    kind = Kind.DASK
    responses = {"GET": schemas.DaskMetricsSerializer}

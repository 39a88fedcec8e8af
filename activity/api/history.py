"""GET .../history?window=: a series' points, from the step that fits the window.

The domains' views (a node's, a backend's, the fleet's) and /api/history/<series>
for the whole-scope series (the fleet, the applications, Ray, Dask) answer
alike: activity.history.history, with the window in 1h, 24h, 7d, 30d (at most a
year; 1h unless given).
"""

from __future__ import annotations

from django.utils import timezone
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import history
from activity.api import schemas
from activity.metrics import parse_window
from core.schema import query

MAX_WINDOW = 366 * 86400.0
WINDOW = query(
    "window", description="e.g. 15m, 1h, 24h, 7d, 30d, 365d (at most); 1h unless given"
)


def window_of(request, maximum: float = MAX_WINDOW) -> float:
    return parse_window(
        request.query_params.get("window"), default="1h", maximum=maximum
    )


def series_history(request, name: str, subject: int = 0) -> Response:
    return Response(
        history.history(
            name,
            subject,
            window=window_of(request),
            now=timezone.now(),
            retention=history.retention(),
        )
    )


class SeriesHistoryView(APIView):
    """GET /api/history/<series>: fleet, apps, ray or dask over the window."""

    query_parameters = {"GET": [WINDOW]}
    responses = {"GET": schemas.HistorySerializer}

    def get(self, request, series: str):
        whole = [s.name for s in history.registered() if s.whole]
        if series not in whole:
            known = ", ".join(sorted(whole))
            raise NotFound(f"no series {series!r}; these are kept whole: {known}")
        return series_history(request, series)

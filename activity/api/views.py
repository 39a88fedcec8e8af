from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import logs, metrics
from core.jsonio import PayloadError
from core.schema import query

MAX_LOG_LIMIT = 1000


class MetricsView(APIView):
    """GET /api/metrics?window=5m&buckets=30: analytics of the requests routers
    reported, in total and as a time series over the window."""

    query_parameters = {
        "GET": [
            query("window", description="e.g. 30s, 5m, 1h"),
            query(
                "buckets",
                OpenApiTypes.INT,
                f"buckets of the time series `series` ({metrics.DEFAULT_BUCKETS} "
                f"unless given, at most {metrics.MAX_BUCKETS}, each at least 1 ms)",
            ),
        ]
    }

    def get(self, request):
        try:
            window = metrics.parse_window(request.query_params.get("window"))
            buckets = metrics.parse_buckets(
                request.query_params.get("buckets"), window=window
            )
        except PayloadError as exc:
            raise ParseError(str(exc)) from None
        return Response(
            metrics.window_metrics(window=window, now=timezone.now(), buckets=buckets)
        )


class LogListView(APIView):
    """GET /api/logs: the newest lines, or the ones after ?since=<id>, filtered.

    POST /api/logs (ingest) is served by the lean lane, activity.api.ingest.
    """

    query_parameters = {
        "GET": [
            query("level", description="this level and above, e.g. WARNING"),
            query("app_id"),
            query("q", description="text the message contains"),
            query("limit", OpenApiTypes.INT),
            query("since", OpenApiTypes.INT, "lines after this id"),
            query("before", OpenApiTypes.INT, "lines before this id"),
        ]
    }

    def get(self, request):
        query = request.query_params
        try:
            filter = logs.parse_filter(query.dict())
            limit = _int(query.get("limit"), "limit", 200, 1, MAX_LOG_LIMIT)
            since = _int(query.get("since"), "since", None, 0, 2**63 - 1)
            before = _int(query.get("before"), "before", None, 1, 2**63 - 1)
        except PayloadError as exc:
            raise ParseError(str(exc)) from None
        if since is not None:
            lines = [
                logs.log_message(row)
                for row in logs.rows_after(since, filter=filter, limit=limit)
            ]
        else:
            lines = logs.recent_lines(filter=filter, limit=limit, before_id=before)
        return Response(
            {
                "logs": lines,
                "count": len(lines),
                "last_id": lines[-1]["id"] if lines else since,
            }
        )


def _int(value, name: str, default, low: int, high: int):
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise PayloadError(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise PayloadError(f"{name} must be between {low} and {high}")
    return number

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import logs, metrics
from activity.api import schemas
from core.pagination import id_cursors
from core.schema import query
from core.validators import query_int

DEFAULT_LOG_LIMIT = 200
MAX_LOG_LIMIT = 1000


class MetricsView(APIView):
    """GET /api/metrics?window=5m&buckets=30: analytics of the requests routers
    reported and the gateway saw, in total and as a time series over the window.

    Up to an hour from the requests themselves; longer windows (up to 30 days)
    from per-minute or per-hour rollups, with estimated percentiles."""

    query_parameters = {
        "GET": [
            query("window", description="e.g. 30s, 5m, 1h, 24h, 7d, 30d (at most)"),
            query(
                "buckets",
                OpenApiTypes.INT,
                f"buckets of the time series `series` ({metrics.DEFAULT_BUCKETS} "
                f"unless given, at most {metrics.MAX_BUCKETS}, each at least 1 ms)",
            ),
            query("source", description="only `gateway` or only `reported` requests"),
            query("node", description="only requests to this node (host:port)"),
            query("model", description="only requests for this model"),
            query("app_id", description="only requests of this application"),
        ]
    }
    responses = {"GET": schemas.MetricsSerializer}

    def get(self, request):
        query = request.query_params
        window = metrics.parse_window(query.get("window"))
        buckets = metrics.parse_buckets(query.get("buckets"), window=window)
        filters = metrics.parse_filters(query)
        return Response(
            metrics.window_metrics(
                window=window, now=timezone.now(), buckets=buckets, filters=filters
            )
        )


class LogListView(APIView):
    """GET /api/logs: the newest lines (before ?before=<id> when given), or the
    ones after ?since=<id> in order, filtered; with how many the filters match in
    all, as GET /api/events pages.

    POST /api/logs (ingest) is served by the lean lane, activity.api.ingest.
    """

    query_parameters = {
        "GET": [
            query("level", description="this level and above, e.g. WARNING"),
            query("app_id"),
            query("q", description="text the message contains"),
            query(
                "limit",
                OpenApiTypes.INT,
                f"{DEFAULT_LOG_LIMIT} unless given, at most {MAX_LOG_LIMIT}",
            ),
            query("since", OpenApiTypes.INT, "lines after this id, oldest first"),
            query("before", OpenApiTypes.INT, "the newest lines before this id"),
        ]
    }
    responses = {"GET": schemas.LogListSerializer}

    def get(self, request):
        query = request.query_params
        filter = logs.parse_filter(query.dict())
        limit = query_int(
            query.get("limit"),
            "limit",
            default=DEFAULT_LOG_LIMIT,
            low=1,
            high=MAX_LOG_LIMIT,
        )
        since, before = id_cursors(query)
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
                "total": logs.count_lines(filter=filter),
                "limit": limit,
            }
        )

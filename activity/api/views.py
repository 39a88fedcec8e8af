from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import logs, metrics
from core.schema import query
from core.validators import query_int

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


ID_MAX = 2**63 - 1


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
        filter = logs.parse_filter(query.dict())
        limit = query_int(
            query.get("limit"), "limit", default=200, low=1, high=MAX_LOG_LIMIT
        )
        since = query_int(query.get("since"), "since", default=None, low=0, high=ID_MAX)
        before = query_int(
            query.get("before"), "before", default=None, low=1, high=ID_MAX
        )
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

"""GET /api/events: the event log, the history behind every live stream.

Paged by id, as the streams resume: the newest events (before ``before`` when
given), or those after ``since`` in order, at most ``limit``; with the total of
events the filters match, so a client knows how far back the log reaches.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import streams
from activity.api import schemas
from activity.models import Event
from core.pagination import id_cursors
from core.schema import query
from core.validators import query_int

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class EventListView(APIView):
    query_parameters = {
        "GET": [
            query(
                "stream", description="one stream (nodes, applications, alerts, ...)"
            ),
            query("type", description="one event type, e.g. status_change"),
            query("since", OpenApiTypes.INT, "events after this id, oldest first"),
            query("before", OpenApiTypes.INT, "the newest events before this id"),
            query(
                "limit",
                OpenApiTypes.INT,
                f"{DEFAULT_LIMIT} unless given, at most {MAX_LIMIT}",
            ),
        ]
    }
    responses = {"GET": schemas.EventListSerializer}

    def get(self, request):
        params = request.query_params
        limit = query_int(
            params.get("limit"), "limit", default=DEFAULT_LIMIT, low=0, high=MAX_LIMIT
        )
        since, before = id_cursors(params)
        events = Event.objects.all()
        stream = params.get("stream")
        if stream:
            known = dict(streams.choices())
            if stream not in known:
                raise ParseError(f"stream must be one of {', '.join(sorted(known))}")
            events = events.filter(stream=stream)
        if params.get("type"):
            events = events.filter(type=params["type"][:40])
        total = events.count()
        if since is not None:
            page = list(events.filter(id__gt=since).order_by("id")[:limit])
        else:
            newest = events.filter(id__lt=before) if before is not None else events
            page = list(newest.order_by("-id")[:limit])[::-1]
        listed = [{**event.as_message(), "stream": event.stream} for event in page]
        return Response(
            {
                "events": listed,
                "total": total,
                "limit": limit,
                "first_id": listed[0]["id"] if listed else None,
                "last_id": listed[-1]["id"] if listed else since,
            }
        )

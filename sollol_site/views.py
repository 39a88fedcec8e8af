from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.shortcuts import render
from django.utils import timezone
from django.views import defaults

from activity import logs, metrics, streams, traces
from activity.models import Event
from activity.services import last_event_id
from alerts.api.views import overview as alerts_overview
from alerts.choices import ALERT_STREAM
from applications.api.serializers import application_data
from applications.choices import APPLICATION_STREAM
from applications.models import Application
from core.tokens import may_write, staff_user
from frameworks import services as frameworks
from frameworks.choices import FRAMEWORK_STREAM, Kind
from network.api.serializers import backend_data, node_list_json
from network.choices import BACKEND_STREAM, NODE_STREAM
from network.models import OllamaNode, RpcBackend
from sollol_site.health import fleet_health

bad_request = defaults.bad_request
page_not_found = defaults.page_not_found
server_error = defaults.server_error

# Long tables show a page of rows at a time (static/dashboard/dom.js Pager); the
# server renders the first page of each, the page's scripts the rest.
PAGE_ROWS = {"nodes": 50, "backends": 50, "applications": 100}
# The page comes with the first page of applications by name and the count; it
# reads the rest after first paint (static/dashboard/panels/apps.js loadAllApps),
# so 10,000 apps do not delay the first paint.
SNAPSHOT_APPLICATIONS = PAGE_ROWS["applications"]
SNAPSHOT_FEED = 200
SNAPSHOT_LOGS = 200
SNAPSHOT_TRACES = 25
EVENT_STREAMS = [
    ALERT_STREAM,
    NODE_STREAM,
    BACKEND_STREAM,
    APPLICATION_STREAM,
    streams.MODEL_ACTIVITY,
    FRAMEWORK_STREAM,
]


def index(request):
    """Render the dashboard with the current state, so the page is never empty.

    The page's scripts resume each stream after the watermark read here, before the
    state: whatever changes while the state is read is replayed, nothing is lost.
    """
    watermarks = {stream: last_event_id(stream) for stream in EVENT_STREAMS}
    watermarks[streams.LOGS] = logs.last_log_id()
    now = timezone.now()
    snapshot = _snapshot(now, watermarks, request.get_host())
    # What the page offers this viewer: acknowledging and silencing alerts.
    snapshot["can_write"] = may_write(request)
    snapshot["user"] = request.user.get_username() if staff_user(request) else ""
    response = render(
        request,
        "dashboard/index.html",
        {
            "snapshot": snapshot,
            "health": snapshot["health"],
            "nodes": _first_page(snapshot["nodes"], "nodes", "url"),
            "nodes_total": len(snapshot["nodes"]),
            "backends": _first_page(snapshot["backends"], "backends", "address"),
            "backends_total": len(snapshot["backends"]),
            "applications": snapshot["applications"][: PAGE_ROWS["applications"]],
            "applications_total": snapshot["applications_total"],
            "frameworks": snapshot["frameworks"].values(),
            "alerts": snapshot["alerts"],
        },
    )
    return with_page_security(response, request)


def _first_page(items: list[dict], table: str, key: str) -> list[dict]:
    """The rows the page's first paint shows of a table, in the table's order."""
    return sorted(items, key=lambda item: str(item.get(key)))[: PAGE_ROWS[table]]


def _snapshot(now, watermarks: dict[str, int], host: str) -> dict[str, Any]:
    apps = Application.objects.order_by("name", "app_id")[:SNAPSHOT_APPLICATIONS]
    feed = Event.objects.filter(stream__in=EVENT_STREAMS).order_by("-id")
    return {
        "generated_at": now.timestamp(),
        "watermarks": watermarks,
        "health": fleet_health(now=now),
        "alerts": alerts_overview(),
        "nodes": json.loads(node_list_json(OllamaNode.objects.all()))["nodes"],
        "backends": [backend_data(b) for b in RpcBackend.objects.all()],
        "applications": [application_data(app, now) for app in apps],
        "applications_total": Application.objects.count(),
        "feed": [
            {**event.as_message(), "stream": event.stream}
            for event in feed[:SNAPSHOT_FEED]
        ],
        "logs": logs.recent_lines(filter=logs.parse_filter({}), limit=SNAPSHOT_LOGS),
        "metrics": metrics.window_metrics(window=300.0, now=now),
        "traces": [
            traces.trace_data(trace)
            for trace in traces.recent_traces(limit=SNAPSHOT_TRACES)
        ],
        "page_rows": PAGE_ROWS,
        "probe_interval": settings.SOLLOL_PROBE_INTERVAL,
        "probe_timeout": settings.SOLLOL_PROBE_TIMEOUT,
        "app_stale_after": settings.SOLLOL_APP_STALE_AFTER,
        # Links to Ray's and Dask's dashboards are on the host this page came from
        # (frameworks.services.public_url).
        "frameworks": {
            kind.value: frameworks.metrics(kind, now=now, host=host) for kind in Kind
        },
        "framework_interval": settings.SOLLOL_FRAMEWORK_INTERVAL,
        "framework_timeout": settings.SOLLOL_FRAMEWORK_TIMEOUT,
    }


def _origin(url: str | None) -> str | None:
    """Return scheme://host[:port] of an http(s) URL, or None for anything else."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if any(char in parts.netloc for char in " ;,'\""):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def framework_origins(host: str = "") -> list[str]:
    """Return the origins of the Ray and Dask dashboards the page may embed.

    `host` is the page's Host header: the links are built on it (see
    frameworks.services.public_url), so the frames must be allowed there.
    """
    origins = []
    for kind in Kind:
        origin = _origin(frameworks.public_url(kind, host))
        if origin and origin not in origins:
            origins.append(origin)
    return origins


def content_security_policy(request) -> str:
    """Return the page's policy: own scripts and styles only, sockets to this host.

    No inline script is allowed; the state snapshot is a JSON data block, which a
    policy does not execute. Frames may show only the Ray and Dask dashboards.
    """
    host = request.get_host()
    frames = " ".join(framework_origins(host)) or "'none'"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",
            f"frame-src {frames}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def with_page_security(response, request):
    """Add the headers that keep the dashboard page from running anyone's script."""
    response["Content-Security-Policy"] = content_security_policy(request)
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "same-origin"
    return response

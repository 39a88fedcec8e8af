"""Every state change of the frameworks app, and the read side of its API.

A collection becomes a `FrameworkSnapshot` row (the API answers from the newest
one; the last few give the sparklines), and a status that differs from the one in
`FrameworkState` becomes a `framework_status_change` event on /ws/frameworks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http.request import split_domain_port

from activity.services import NewEvent, record_events
from core import realtime
from core.addresses import is_loopback
from core.db import prune_newest
from core.httpclient import split_credential
from frameworks import collectors, history
from frameworks.choices import FRAMEWORK_STREAM, FrameworkStatus, Kind
from frameworks.collectors import Collection
from frameworks.models import FrameworkSnapshot, FrameworkState

LABELS = {Kind.RAY: "Ray", Kind.DASK: "Dask"}
# The fields of each framework's answer besides the common ones, null until known.
DATA_KEYS = {
    Kind.RAY: (
        "ray_version",
        "ray_commit",
        "session_name",
        "nodes",
        "nodes_total",
        "nodes_alive",
        "resources",
        "jobs",
        "tasks",
        "actors",
    ),
    Kind.DASK: (
        "dask_version",
        "scheduler",
        "workers",
        "workers_total",
        "nodes",
        "resources",
        "tasks",
    ),
}
# The headline fields each collection sends to viewers as a sample (the node and
# worker lists stay out: a viewer fetches them when it needs them).
SAMPLE_KEYS = {
    Kind.RAY: (
        "ray_version",
        "nodes_total",
        "nodes_alive",
        "resources",
        "jobs",
        "tasks",
        "actors",
    ),
    Kind.DASK: ("dask_version", "workers_total", "resources", "tasks"),
}
URL_SETTINGS = {
    Kind.RAY: "SOLLOL_RAY_DASHBOARD_URL",
    Kind.DASK: "SOLLOL_DASK_DASHBOARD_URL",
}
# Not a FrameworkStatus: the API says it while a configured framework has not been
# collected yet (just after start-up, or after its URL changed).
PENDING = "pending"


def dashboard_url(kind: str) -> str:
    """Return the framework's configured URL as it is shown: without userinfo."""
    url = getattr(settings, URL_SETTINGS[kind])
    return split_credential(url)[0] if url else url


def public_url(kind: str, host: str = "") -> str:
    """Return the address a browser should open a framework's dashboard at.

    A configured public URL wins. Otherwise the collector's URL, except that a
    loopback one (what UnifiedDashboard sets even when serving on 0.0.0.0) means
    "this machine": a browser elsewhere reaches it by the name it used for the
    page, `host` (the request's Host header), on the cluster's port.
    """
    configured = (
        settings.SOLLOL_RAY_PUBLIC_URL
        if kind == Kind.RAY
        else settings.SOLLOL_DASK_PUBLIC_URL
    )
    if configured:
        return configured
    url = dashboard_url(kind)
    return on_browser_host(url, host) if url and host else url


def on_browser_host(url: str, host: str) -> str:
    """Return url on the host a browser used, if url points at loopback."""
    browser_host, _ = split_domain_port(host)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    if not browser_host or not is_loopback(parts.hostname):
        return url
    netloc = f"{browser_host}:{port}" if port else browser_host
    return urlunsplit(parts._replace(netloc=netloc))


def collect_frameworks(*, now: dt.datetime) -> dict[str, str]:
    """Collect every configured framework at once; store what each answered.

    Call from a thread, not from a running event loop. Returns {kind: status}.
    """
    collections = asyncio.run(
        collectors.collect(
            settings.SOLLOL_RAY_DASHBOARD_URL,
            settings.SOLLOL_RAY_AUTH_TOKEN,
            settings.SOLLOL_DASK_DASHBOARD_URL,
            timeout=settings.SOLLOL_FRAMEWORK_TIMEOUT,
        )
    )
    statuses = {}
    for collection in collections:
        record_collection(collection, now=now)
        statuses[collection.kind] = collection.status
    for kind in Kind:
        if not dashboard_url(kind):
            record_not_configured(kind, now=now)
            statuses[kind.value] = FrameworkStatus.NOT_CONFIGURED
    publish_framework_samples(collections, now=now)
    return statuses


def publish_framework_samples(
    collections: list[Collection], *, now: dt.datetime
) -> None:
    """Send each collection's headline numbers to viewers that asked for samples.

    Most collections change no status and so make no event, yet the numbers and
    the sparklines move with every one: the page follows these samples instead of
    polling /api/<kind>/metrics.
    """
    if not collections:
        return
    at = now.timestamp()
    realtime.publish_samples(
        FRAMEWORK_STREAM,
        {
            "frameworks": [
                {
                    "framework": collection.kind,
                    "status": collection.status,
                    **{
                        key: collection.data.get(key)
                        for key in SAMPLE_KEYS[collection.kind]
                    },
                    "collected_at": at,
                    "duration_ms": collection.duration_ms,
                    "error": collection.error or None,
                    "warnings": collection.warnings,
                    # The point this collection adds to the answer's history.
                    "point": {
                        "t": at,
                        "status": collection.status,
                        **collection.sample,
                    },
                }
                for collection in collections
            ],
            "at": at,
        },
    )


def record_collection(collection: Collection, *, now: dt.datetime) -> FrameworkSnapshot:
    """Store one collection; announce a status change; keep the history bounded."""
    with transaction.atomic():
        snapshot = FrameworkSnapshot.objects.create(
            kind=collection.kind,
            status=collection.status,
            dashboard_url=collection.dashboard_url,
            envelope=collection.data,
            sample=collection.sample,
            error=collection.error,
            warnings=collection.warnings,
            collected_at=now,
            duration_ms=collection.duration_ms,
        )
        prune_snapshots(collection.kind, keep=settings.SOLLOL_FRAMEWORK_HISTORY)
        history.record(collection.kind, collection.status, collection.sample, now=now)
        _change_status(collection.kind, collection.status, collection, now=now)
    return snapshot


def record_not_configured(kind: str, *, now: dt.datetime) -> FrameworkSnapshot | None:
    """Note that a framework watched before has lost its URL (once, not every cycle)."""
    state = FrameworkState.objects.filter(kind=kind).first()
    if state is None or state.status == FrameworkStatus.NOT_CONFIGURED:
        return None
    return record_collection(
        Collection(
            kind,
            FrameworkStatus.NOT_CONFIGURED,
            "",
            error=f"{URL_SETTINGS[kind]} is not set",
        ),
        now=now,
    )


def _change_status(
    kind: str, status: str, collection: Collection, *, now: dt.datetime
) -> None:
    """Flip FrameworkState to status; write the event only if this call flipped it."""
    state = FrameworkState.objects.filter(kind=kind).first()
    if state is None:
        try:
            with transaction.atomic():
                FrameworkState.objects.create(
                    kind=kind,
                    status=status,
                    dashboard_url=collection.dashboard_url,
                    changed_at=now,
                )
        except IntegrityError:
            return  # another collector recorded the first status
        old_status = None
    elif state.status == status:
        if state.dashboard_url != collection.dashboard_url:
            FrameworkState.objects.filter(pk=state.pk).update(
                dashboard_url=collection.dashboard_url
            )
        return
    else:
        flipped = FrameworkState.objects.filter(
            pk=state.pk, status=state.status
        ).update(status=status, dashboard_url=collection.dashboard_url, changed_at=now)
        if not flipped:
            return  # another collector got there first and announced it
        old_status = state.status
    record_events([_status_event(kind, old_status, status, collection)], now=now)


def _status_event(
    kind: str, old_status: str | None, new_status: str, collection: Collection
) -> NewEvent:
    label = LABELS[kind]
    where = collection.dashboard_url or "(no URL)"
    change = f"{old_status} → {new_status}" if old_status else new_status
    message = f"{label} dashboard {where}: {change}"
    if collection.error and new_status != FrameworkStatus.ACTIVE:
        message += f" ({collection.error[:200]})"
    return NewEvent(
        stream=FRAMEWORK_STREAM,
        type="framework_status_change",
        message=message,
        payload={
            "framework": kind,
            "dashboard_url": collection.dashboard_url,
            "public_url": public_url(kind) if collection.dashboard_url else "",
            "old_status": old_status,
            "new_status": new_status,
            "error": collection.error or None,
        },
    )


def prune_snapshots(kind: str, *, keep: int) -> int:
    """Delete all but the newest `keep` snapshots of a framework."""
    return prune_newest(FrameworkSnapshot.objects.filter(kind=kind), keep=keep)


def metrics(kind: str, *, now: dt.datetime, host: str = "") -> dict[str, Any]:
    """Return GET /api/<kind>/metrics: the newest snapshot and the recent history.

    `host` is the Host header the browser sent (see public_url).
    """
    url = dashboard_url(kind)
    answer: dict[str, Any] = {
        "framework": kind,
        "status": FrameworkStatus.NOT_CONFIGURED.value,
        "status_since": None,
        "dashboard_url": url or None,
        "public_url": public_url(kind, host) or None,
        **dict.fromkeys(DATA_KEYS[kind]),
        "collected_at": None,
        "duration_ms": None,
        "stale": False,
        "error": f"{URL_SETTINGS[kind]} is not set",
        "warnings": [],
        "history": [],
    }
    if not url:
        return answer
    rows = list(
        FrameworkSnapshot.objects.filter(kind=kind, dashboard_url=url)
        .order_by("-id")
        .values_list("id", "collected_at", "status", "sample")[
            : settings.SOLLOL_FRAMEWORK_HISTORY
        ]
    )
    if not rows:
        answer.update(status=PENDING, error=None)
        return answer
    latest = FrameworkSnapshot.objects.get(pk=rows[0][0])
    state = (
        FrameworkState.objects.filter(kind=kind).values("status", "changed_at").first()
    )
    since = state["changed_at"] if state and state["status"] == latest.status else None
    age = (now - latest.collected_at).total_seconds()
    answer.update(
        {key: latest.envelope.get(key) for key in DATA_KEYS[kind]},
        status=latest.status,
        status_since=since.timestamp() if since else None,
        collected_at=latest.collected_at.timestamp(),
        duration_ms=latest.duration_ms,
        # Collections stopped (beat or worker down): the numbers are old news.
        stale=age
        > 3 * settings.SOLLOL_FRAMEWORK_INTERVAL + settings.SOLLOL_FRAMEWORK_TIMEOUT,
        error=latest.error or None,
        warnings=latest.warnings,
        history=[
            {"t": collected_at.timestamp(), "status": status, **sample}
            for _, collected_at, status, sample in reversed(rows)
        ],
    )
    return answer

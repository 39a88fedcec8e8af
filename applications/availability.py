"""Each application's availability over a window: the share of the time it was
active, read from its events in the log (registered or recovered: active; stale,
unregistered or removed: not), so it is as long as the event log keeps them
(SOLLOL_EVENT_RETENTION_AGE, 7 days by default).

The time counted starts at the window's start or the application's registration,
whichever is later. Before its first change in the window an application was in
the state that change ended; with no change in the window, it was throughout in
the state the sweep last gave it (its stored status).
"""

from __future__ import annotations

import datetime as dt

from activity.models import Event
from applications.choices import APPLICATION_STREAM, AppStatus
from applications.models import Application

UP = frozenset({"app_registered", "app_recovered"})
DOWN = frozenset({"app_stale", "app_unregistered", "app_removed"})


def availability(
    apps: list[Application], *, window: float, now: dt.datetime
) -> dict[str, float | None]:
    """{app_id: share of the window active}; None for an app not known in it."""
    since = now - dt.timedelta(seconds=window)
    changes: dict[str, list[tuple[dt.datetime, bool]]] = {}
    rows = (
        Event.objects.filter(
            stream=APPLICATION_STREAM,
            type__in=UP | DOWN,
            timestamp__gte=since,
            timestamp__lte=now,
            payload__app_id__in=[app.app_id for app in apps],
        )
        .order_by("timestamp", "id")  # by when, whichever process wrote first
        .values_list("payload__app_id", "type", "timestamp")
    )
    for app_id, kind, at in rows:
        changes.setdefault(app_id, []).append((at, kind in UP))
    shares = {}
    for app in apps:
        start = max(since, app.start_time)
        known = (now - start).total_seconds()
        steps = [(at, up) for at, up in changes.get(app.app_id, ()) if at >= start]
        if known <= 0:
            shares[app.app_id] = None
            continue
        up = not steps[0][1] if steps else app.status == AppStatus.ACTIVE
        active, last = 0.0, start
        for at, now_up in steps:
            if up:
                active += (at - last).total_seconds()
            up, last = now_up, at
        if up:
            active += (now - last).total_seconds()
        shares[app.app_id] = round(min(1.0, max(0.0, active / known)), 6)
    return shares

"""The applications' series (activity/history.py): how many there are, and how
many report, measured every SOLLOL_HISTORY_INTERVAL seconds."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Count, Q

from activity import history
from activity.history import Point, Series
from applications.models import Application


def _interval() -> float:
    return settings.SOLLOL_HISTORY_INTERVAL


def counts(now: dt.datetime) -> list[Point]:
    apps = Application.objects.aggregate(
        total=Count("app_id"), active=Count("app_id", filter=Q(stale_after__gt=now))
    )
    return [Point(up=apps["active"] > 0, count=apps["active"], total=apps["total"])]


APPS = history.register(
    Series(
        "apps", 4, _interval, up="any_active", count="active", total="registered",
        whole=True, sample=counts,
    )
)  # fmt: skip

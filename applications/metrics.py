"""Registered applications for /api/prometheus (activity.prometheus)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count

from applications.choices import AppStatus
from applications.models import Application
from core.prometheus import Family, escape


def applications() -> Iterator[Family]:
    counts = dict.fromkeys(AppStatus.values, 0)
    rows = (
        Application.objects.order_by().values_list("status").annotate(count=Count("*"))
    )
    for app_status, count in rows:
        counts[app_status] = count
    family = Family(
        "sollol_applications", "gauge", "Registered applications by status."
    )
    for app_status, count in counts.items():
        family.add(f'status="{escape(app_status)}"', count)
    yield family

"""sollol_alerts_firing{rule,severity} for /api/prometheus."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q

from alerts.choices import AlertState
from alerts.models import Rule
from core.prometheus import Family, escape


def alerts() -> Iterator[Family]:
    family = Family(
        "sollol_alerts_firing",
        "gauge",
        "Alerts firing now, by rule and severity (silenced ones included).",
    )
    rows = (
        Rule.objects.filter(enabled=True)
        .annotate(firing=Count("alerts", filter=Q(alerts__state=AlertState.FIRING)))
        .values_list("name", "severity", "firing")
    )
    for name, severity, firing in rows:
        family.add(f'rule="{escape(name)}",severity="{escape(severity)}"', firing)
    yield family

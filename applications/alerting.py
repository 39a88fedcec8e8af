"""The applications' condition for alerting (activity.alerting): an app gone stale;
and the apps' labels, that rules and silences are scoped by."""

from __future__ import annotations

from activity.alerting import Check, Condition, Finding, register, register_labels
from applications.choices import AppStatus
from applications.models import Application
from core.db import read_values


def apps_stale(check: Check) -> list[Finding]:
    rows = read_values(
        Application.objects.filter(status=AppStatus.STALE),
        ["app_id", "name", "last_heartbeat"],
    )
    return [
        # No value: the age grows every round, and the message says when.
        Finding(
            app_id,
            None,
            f"application {name} ({app_id}) stopped sending heartbeats "
            f"(the last at {last:%Y-%m-%d %H:%M:%S} UTC)",
        )
        for app_id, name, last in rows
    ]


register(
    Condition("app_stale", "Application stale", "app", "warning", None, "s", apps_stale)
)


def app_labels() -> dict[str, dict[str, str]]:
    """{app_id: labels} of the apps that have labels (the subjects apps_stale names)."""
    labelled = Application.objects.exclude(labels={}).order_by()
    return dict(labelled.values_list("app_id", "labels"))


register_labels("app", app_labels)

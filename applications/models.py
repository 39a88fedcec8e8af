from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import Q

from applications.choices import AppStatus


class Application(models.Model):
    """An application that uses the fleet and reports itself with heartbeats."""

    app_id = models.CharField(max_length=128, primary_key=True)
    name = models.CharField(max_length=200)
    router_type = models.CharField(max_length=100, blank=True)
    version = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The operator's labels (core/labels.py), that alert rules and silences are
    # scoped by: given at registration, or in metadata.labels by upstream clients.
    labels = models.JSONField(default=dict, blank=True)
    # Fingerprint of the write token that registered it (SOLLOL_MAX_APPS_PER_TOKEN).
    owner = models.CharField(max_length=16, blank=True, db_index=True)
    status = models.CharField(
        max_length=16, choices=AppStatus.choices, default=AppStatus.ACTIVE
    )
    start_time = models.DateTimeField()
    last_heartbeat = models.DateTimeField()
    # Deadlines, indexed so the sweep finds due rows cheaply. They normally follow
    # last_heartbeat; after a dashboard outage they are pushed out (self-preservation).
    stale_after = models.DateTimeField(db_index=True)
    remove_after = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name", "app_id"]
        indexes = [
            models.Index(fields=["status", "name"], name="app_status_name"),
            # The few labelled apps, read every alert round among 10,000 (a scan
            # of the table was most of that read on PostgreSQL).
            models.Index(
                fields=["app_id"], condition=~Q(labels={}), name="app_labelled"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.app_id})"

    def get_status(self, now: dt.datetime) -> str:
        """Return the status the application has at `now`, from its deadlines."""
        return AppStatus.STALE if now >= self.stale_after else AppStatus.ACTIVE

    def is_expired(self, now: dt.datetime) -> bool:
        """Return whether the application is past its removal deadline at `now`."""
        return now >= self.remove_after

    def uptime_seconds(self, now: dt.datetime) -> float:
        return max(0.0, (now - self.start_time).total_seconds())

    def last_seen_seconds(self, now: dt.datetime) -> float:
        return max(0.0, (now - self.last_heartbeat).total_seconds())


class SweepMark(models.Model):
    """When the lifecycle sweep last ran, so a restart can tell it was down."""

    name = models.CharField(max_length=32, primary_key=True)
    last_run = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.last_run:%Y-%m-%d %H:%M:%S}"

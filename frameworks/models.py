from __future__ import annotations

from django.db import models

from frameworks.choices import FrameworkStatus, Kind


class FrameworkSnapshot(models.Model):
    """One collection of a Ray or Dask dashboard: what GET /api/<kind>/metrics shows."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=FrameworkStatus.choices)
    dashboard_url = models.CharField(max_length=500, blank=True)
    # The body of the API answer (nodes/workers, resources, jobs/tasks, ...).
    envelope = models.JSONField(default=dict, blank=True)
    # The few numbers the sparklines plot, read for the whole history at once.
    sample = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True)
    collected_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["kind", "-id"], name="framework_snapshot_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.status} at {self.collected_at:%Y-%m-%d %H:%M:%S}"


class FrameworkState(models.Model):
    """A framework's current status and since when: the row status changes flip."""

    kind = models.CharField(max_length=8, choices=Kind.choices, unique=True)
    status = models.CharField(max_length=16, choices=FrameworkStatus.choices)
    dashboard_url = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind}: {self.status}"

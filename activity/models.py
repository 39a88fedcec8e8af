from __future__ import annotations

from typing import Any

from django.db import models

from activity.choices import Stream


class Event(models.Model):
    """One observable change; every live stream, replay and feed is read from these."""

    id = models.BigAutoField(primary_key=True)
    stream = models.CharField(max_length=32, choices=Stream.choices)
    type = models.CharField(max_length=40, db_index=True)
    timestamp = models.DateTimeField(db_index=True)
    message = models.TextField()
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["stream", "id"], name="event_stream_id")]

    def __str__(self) -> str:
        return f"#{self.id} {self.type}: {self.message}"

    def as_message(self) -> dict[str, Any]:
        """Return the event as sent on its stream (DESIGN.md §5)."""
        message = {
            "id": self.id,
            "type": self.type,
            "timestamp": self.timestamp.timestamp(),
            "message": self.message,
        }
        for key, value in self.payload.items():
            message.setdefault(key, value)
        return message


class EventCount(models.Model):
    """How many events of a type were ever written: a counter pruning never lowers."""

    stream = models.CharField(max_length=32, choices=Stream.choices)
    type = models.CharField(max_length=40)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "type"], name="event_count_key")
        ]

    def __str__(self) -> str:
        return f"{self.stream}/{self.type}: {self.count}"


class RequestRecord(models.Model):
    """One inference request a router or application reported (POST /api/activity)."""

    id = models.BigAutoField(primary_key=True)
    timestamp = models.DateTimeField(db_index=True)  # when the request finished
    app_id = models.CharField(max_length=128, blank=True)
    node = models.CharField(max_length=300, blank=True)  # host:port
    model = models.CharField(max_length=200, blank=True)
    latency_ms = models.FloatField()
    ok = models.BooleanField()
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.model} on {self.node}: {self.latency_ms:.0f} ms"


class RequestTotals(models.Model):
    """Every reported request ever, summed per node and model (Prometheus counters).

    ``buckets`` holds, per bound of ``activity.metrics.LATENCY_BUCKETS``, how many
    requests took at most that long and more than the bound before it (not
    cumulative); the last entry counts the ones beyond every bound.
    """

    node = models.CharField(max_length=300, blank=True)
    model = models.CharField(max_length=200, blank=True)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    latency_seconds_sum = models.FloatField(default=0.0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    buckets = models.JSONField(default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node", "model"], name="request_totals_key")
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.node}: {self.requests}"


class LogRecord(models.Model):
    """One log line, from an application or from the dashboard itself."""

    id = models.BigAutoField(primary_key=True)
    timestamp = models.DateTimeField(db_index=True)
    level = models.CharField(max_length=16)
    levelno = models.PositiveSmallIntegerField()
    logger = models.CharField(max_length=200, blank=True)
    message = models.TextField()
    app_id = models.CharField(max_length=128, blank=True)
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["app_id", "id"], name="log_app_id")]

    def __str__(self) -> str:
        return f"#{self.id} {self.level} {self.logger}: {self.message[:80]}"

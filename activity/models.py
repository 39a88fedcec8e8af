from __future__ import annotations

from typing import Any

from django.db import models

from activity import streams
from activity.choices import SpanKind, SpanStatus


class Event(models.Model):
    """One observable change; every live stream, replay and feed is read from these."""

    id = models.BigAutoField(primary_key=True)
    stream = models.CharField(max_length=32, choices=streams.choices)
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
        """Return the event as sent on its stream (docs/ARCHITECTURE.md)."""
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

    stream = models.CharField(max_length=32, choices=streams.choices)
    type = models.CharField(max_length=40)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "type"], name="event_count_key")
        ]

    def __str__(self) -> str:
        return f"{self.stream}/{self.type}: {self.count}"


class RequestRecord(models.Model):
    """One inference request: reported by a router or application (POST
    /api/activity), or seen by the gateway (network/gateway), which knows more."""

    class Source(models.TextChoices):
        REPORTED = "reported", "Reported"
        GATEWAY = "gateway", "Gateway"

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
    source = models.CharField(
        max_length=16, choices=Source.choices, default=Source.REPORTED
    )
    # What the gateway measures (null for reported requests): the API endpoint
    # ("chat", "v1/chat/completions"...), the HTTP status the client got, the time
    # waiting for a free slot of the node, to the first body byte, and the
    # generation speed the node gave (eval_count / eval_duration).
    endpoint = models.CharField(max_length=32, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    queue_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Each probe batch counts its nodes' recent reports (network.services
            # reported_outcomes): without it, 19x the writer's time (bench/reported.py).
            models.Index(fields=["node", "timestamp"], name="request_node_time"),
        ]

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


# Upper bounds (inclusive), in milliseconds, of the latency histogram the rollups
# and the gateway's Prometheus totals keep: one integer column per bound, so SQL
# can SUM them, and one (le_inf) for the requests beyond the last.
LATENCY_BOUNDS_MS = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
)  # fmt: skip
BUCKET_FIELDS = (
    "le_5ms", "le_10ms", "le_25ms", "le_50ms", "le_100ms", "le_250ms", "le_500ms",
    "le_1s", "le_2500ms", "le_5s", "le_10s", "le_30s", "le_60s", "le_120s", "le_inf",
)  # fmt: skip


class LatencyHistogram(models.Model):
    """How many requests took at most each bound of LATENCY_BOUNDS_MS and more than
    the bound before it (not cumulative); le_inf: longer than every bound."""

    le_5ms = models.BigIntegerField(default=0)
    le_10ms = models.BigIntegerField(default=0)
    le_25ms = models.BigIntegerField(default=0)
    le_50ms = models.BigIntegerField(default=0)
    le_100ms = models.BigIntegerField(default=0)
    le_250ms = models.BigIntegerField(default=0)
    le_500ms = models.BigIntegerField(default=0)
    le_1s = models.BigIntegerField(default=0)
    le_2500ms = models.BigIntegerField(default=0)
    le_5s = models.BigIntegerField(default=0)
    le_10s = models.BigIntegerField(default=0)
    le_30s = models.BigIntegerField(default=0)
    le_60s = models.BigIntegerField(default=0)
    le_120s = models.BigIntegerField(default=0)
    le_inf = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class RequestRollup(LatencyHistogram):
    """The requests of one period (a minute, hour or day) summed per node, model,
    application, endpoint, status class and source (activity/rollups.py).

    status_class: "2xx", "4xx"... from the HTTP status a request had, or "ok" and
    "error" for reported requests, which have none. Every number can be added to
    the same row of another batch, and summed over rows by SQL.
    """

    id = models.BigAutoField(primary_key=True)
    start = models.DateTimeField()  # the period's first instant, UTC
    node = models.CharField(max_length=300, blank=True)
    model = models.CharField(max_length=200, blank=True)
    app_id = models.CharField(max_length=128, blank=True)
    endpoint = models.CharField(max_length=32, blank=True)
    status_class = models.CharField(max_length=8)
    source = models.CharField(max_length=16, choices=RequestRecord.Source.choices)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0.0)
    latency_ms_min = models.FloatField()
    latency_ms_max = models.FloatField()
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    # The requests that said how many tokens they made, and their latency: tokens
    # per second of request time is completion_tokens / token_latency_ms_sum.
    token_requests = models.BigIntegerField(default=0)
    token_latency_ms_sum = models.FloatField(default=0.0)
    # Measured by the gateway: time to first token and waiting for a slot.
    ttft_ms_sum = models.FloatField(default=0.0)
    ttft_count = models.BigIntegerField(default=0)
    queue_ms_sum = models.FloatField(default=0.0)
    queue_count = models.BigIntegerField(default=0)

    KEY = ("start", "node", "model", "app_id", "endpoint", "status_class", "source")

    class Meta:
        abstract = True
        ordering = ["start"]
        # Its index, led by start, is also the one the windows' range scans use.
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "start", "node", "model", "app_id", "endpoint", "status_class",
                    "source",
                ],
                name="%(class)s_key",
            )
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} {self.model} on {self.node}"


class MinuteRollup(RequestRollup):
    """Requests per minute (kept SOLLOL_ROLLUP_MINUTE_RETENTION)."""


class HourRollup(RequestRollup):
    """Requests per hour (kept SOLLOL_ROLLUP_HOUR_RETENTION)."""


class DayRollup(RequestRollup):
    """Requests per day, UTC (kept SOLLOL_ROLLUP_HOUR_RETENTION, as hours are)."""


class GatewayTotals(LatencyHistogram):
    """Every request through the gateway ever, per node, model and HTTP status
    (Prometheus counters: never pruned)."""

    node = models.CharField(max_length=300, blank=True)
    model = models.CharField(max_length=200, blank=True)
    status_code = models.PositiveSmallIntegerField()
    requests = models.BigIntegerField(default=0)
    latency_seconds_sum = models.FloatField(default=0.0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)

    KEY = ("node", "model", "status_code")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["node", "model", "status_code"], name="gateway_totals_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.node} ({self.status_code}): {self.requests}"


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


class Span(models.Model):
    """One timed operation of a distributed trace, as an application reported it."""

    id = models.BigAutoField(primary_key=True)
    trace_id = models.CharField(max_length=32)  # 32 lowercase hex digits
    span_id = models.CharField(max_length=16)  # 16 lowercase hex digits
    parent_span_id = models.CharField(max_length=16, blank=True)  # "" for a root
    name = models.CharField(max_length=500, blank=True)
    service = models.CharField(max_length=200)
    kind = models.CharField(
        max_length=16, choices=SpanKind.choices, default=SpanKind.INTERNAL
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    # Kept apart from end - start: the client's nanoseconds, not our microseconds.
    duration_ms = models.FloatField()
    status = models.CharField(
        max_length=8, choices=SpanStatus.choices, default=SpanStatus.UNSET
    )
    status_message = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["start", "id"]
        constraints = [
            # A re-exported span is the same span: ingest ignores the second copy.
            models.UniqueConstraint(fields=["trace_id", "span_id"], name="span_key")
        ]
        indexes = [
            models.Index(fields=["service", "trace_id"], name="span_service_trace")
        ]

    def __str__(self) -> str:
        return f"{self.service}: {self.name} ({self.duration_ms:.1f} ms)"


class Trace(models.Model):
    """One trace as the list shows it, recomputed from its spans as they arrive."""

    id = models.BigAutoField(primary_key=True)
    trace_id = models.CharField(max_length=32, unique=True)
    root_span_id = models.CharField(max_length=16, blank=True)
    root_name = models.CharField(max_length=500, blank=True)
    root_service = models.CharField(max_length=200, blank=True)
    services = models.JSONField(default=list, blank=True)
    start = models.DateTimeField()
    end = models.DateTimeField()
    duration_ms = models.FloatField()
    span_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    # When the latest span arrived, by our clock: retention ages traces by this,
    # so a client with a wrong clock cannot get its traces pruned on arrival.
    received = models.DateTimeField()

    class Meta:
        ordering = ["-start"]
        indexes = [
            models.Index(fields=["-start"], name="trace_recent"),
            models.Index(fields=["duration_ms"], name="trace_duration"),
            models.Index(fields=["received"], name="trace_received"),
        ]

    def __str__(self) -> str:
        return f"{self.trace_id} {self.root_name} ({self.span_count} spans)"


class SeriesMeasurement(models.Model):
    """One measurement of a kept series (activity/history.py), as it was taken.

    Which quantity each column holds is the series' own (history.Series): a
    node's ``value`` is its probe's latency and ``gauge`` its VRAM, the fleet's
    ``count`` its usable nodes. No id: the key is the row. Columns are ordered
    widest first, so PostgreSQL pads none (this table holds the most rows).
    """

    pk = models.CompositePrimaryKey("series", "subject", "at")
    at = models.DateTimeField()
    value = models.FloatField(null=True)
    gauge = models.BigIntegerField(null=True)
    subject = models.PositiveIntegerField(default=0)  # a node's id; 0: the whole
    count = models.IntegerField(null=True)
    total = models.IntegerField(null=True)
    series = models.PositiveSmallIntegerField()  # history.Series.code
    up = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["at"], name="series_measurement_at")]

    def __str__(self) -> str:
        return f"{self.series}/{self.subject} at {self.at}"


class SeriesRollup(models.Model):
    """A step's measurements of a subject, summed: averages are value_sum /
    value_n; ``gauge``, ``count`` and ``total`` keep the step's highest."""

    pk = models.CompositePrimaryKey("series", "subject", "at")
    at = models.DateTimeField()  # the step's start
    value_sum = models.FloatField(null=True)
    value_max = models.FloatField(null=True)
    gauge = models.BigIntegerField(null=True)
    subject = models.PositiveIntegerField(default=0)
    n = models.PositiveIntegerField(default=0)  # measurements
    up = models.PositiveIntegerField(default=0)  # of them, the subject was up
    value_n = models.PositiveIntegerField(default=0)
    count = models.IntegerField(null=True)
    total = models.IntegerField(null=True)
    series = models.PositiveSmallIntegerField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.series}/{self.subject} at {self.at}"


class SeriesMinute(SeriesRollup):
    """A minute of measurements (SOLLOL_HISTORY_MINUTE_RETENTION)."""

    class Meta:
        indexes = [models.Index(fields=["at"], name="series_minute_at")]


class SeriesHour(SeriesRollup):
    """An hour of minutes (SOLLOL_HISTORY_HOUR_RETENTION)."""

    class Meta:
        indexes = [models.Index(fields=["at"], name="series_hour_at")]


class SeriesMark(models.Model):
    """How far a step's points were rolled up: every one before ``until`` is in."""

    step = models.PositiveIntegerField(primary_key=True)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"step {self.step} until {self.until}"

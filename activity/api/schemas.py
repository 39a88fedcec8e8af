"""What the activity API answers and takes, described for the OpenAPI schema.

These serializers describe; they do not serialize. The answers are built by hand
(activity.metrics and activity.rollups, activity.logs, Event.as_message,
activity.traces, activity.history), and tests check each answer against these
descriptions strictly (tests/openapi.py), so the two cannot drift apart
unnoticed. What an outside program decides (a span's attributes, a log line's
extra, the fields of an event's type) is open. Times are epoch seconds.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from activity.choices import SpanKind, SpanStatus
from activity.rollups import ESTIMATED
from core.schema import PageSerializer

OPEN = serializers.DictField  # an object whose keys the sender decides


class OpenSerializer(serializers.Serializer):
    """An object with the fields described, and others its sender decides."""


class OpenSerializerSchema(OpenApiSerializerExtension):
    """Say so in the schema: additionalProperties, which the strict check keeps."""

    target_class = OpenSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        return {**schema, "additionalProperties": True}


# --- GET /api/metrics -----------------------------------------------------------


class RequestLatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True, help_text="ms; null: no requests")
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class RequestLatencyMeanSerializer(RequestLatencySerializer):
    mean = serializers.FloatField(allow_null=True)


class RequestStatsSerializer(serializers.Serializer):
    """Requests over the window: null, not 0, where there were none to measure."""

    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    requests_per_second = serializers.FloatField()
    success_rate = serializers.FloatField(allow_null=True, help_text="0 to 1")
    latency_ms = RequestLatencyMeanSerializer()
    tokens_per_second = serializers.FloatField(
        allow_null=True,
        help_text="completion tokens per second of request time, over the "
        "requests that said how many they made",
    )
    completion_tokens = serializers.IntegerField(allow_null=True)


class NodeRequestStatsSerializer(RequestStatsSerializer):
    node = serializers.CharField(help_text="host:port")


class ModelRequestStatsSerializer(RequestStatsSerializer):
    model = serializers.CharField()


class ApplicationRequestStatsSerializer(RequestStatsSerializer):
    app_id = serializers.CharField(help_text='"": requests no application named')


class RequestBucketSerializer(serializers.Serializer):
    start = serializers.FloatField()
    end = serializers.FloatField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    latency_ms = RequestLatencySerializer()


class MetricsFiltersSerializer(serializers.Serializer):
    """The filters that applied; an empty object: none."""

    source = serializers.CharField(required=False, help_text="gateway or reported")
    node = serializers.CharField(required=False, help_text="host:port")
    model = serializers.CharField(required=False)
    app_id = serializers.CharField(required=False)


class MetricsSerializer(serializers.Serializer):
    window_seconds = serializers.FloatField()
    since = serializers.FloatField(
        help_text="where the window starts (from rollups: its first whole period)"
    )
    until = serializers.FloatField()
    answered_from = serializers.ChoiceField(
        ["requests", "rollups"],
        help_text="the requests themselves (up to an hour), or the rollups",
    )
    resolution_seconds = serializers.IntegerField(
        allow_null=True, help_text="the rollups' period; null: the requests"
    )
    percentiles = serializers.ChoiceField(["exact", ESTIMATED])
    totals = RequestStatsSerializer()
    per_node = NodeRequestStatsSerializer(many=True, help_text="busiest first")
    per_model = ModelRequestStatsSerializer(many=True, help_text="busiest first")
    per_application = ApplicationRequestStatsSerializer(
        many=True, help_text="busiest first"
    )
    bucket_seconds = serializers.FloatField()
    series = RequestBucketSerializer(
        many=True, help_text="the window over time, oldest first"
    )
    filters = MetricsFiltersSerializer()
    note = serializers.CharField(
        required=False,
        help_text="why the numbers are null, or why the rollups answered a short "
        "window",
    )


# --- GET /api/logs, GET /api/events -------------------------------------------------


class LogLineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField(help_text='"log"')
    timestamp = serializers.FloatField()
    level = serializers.CharField(help_text="DEBUG, INFO, WARNING, ERROR, ...")
    logger = serializers.CharField()
    message = serializers.CharField()
    app_id = serializers.CharField()
    extra = OPEN(help_text="as the sender gave it (OTLP: attributes, trace ids)")


class LogListSerializer(serializers.Serializer):
    logs = LogLineSerializer(many=True, help_text="oldest first")
    count = serializers.IntegerField(help_text="lines in this answer")
    last_id = serializers.IntegerField(
        allow_null=True,
        help_text="the last line's id, for ?since= (no lines: since, or null)",
    )
    total = serializers.IntegerField(
        help_text="lines the filters match in all, whatever since and before"
    )
    limit = serializers.IntegerField()


class EventSerializer(OpenSerializer):
    """An event as its stream sends it, with the fields of its type."""

    id = serializers.IntegerField()
    type = serializers.CharField(help_text="status_change, app_registered, ...")
    timestamp = serializers.FloatField()
    message = serializers.CharField()
    stream = serializers.CharField(help_text="nodes, applications, alerts, ...")


class EventListSerializer(serializers.Serializer):
    events = EventSerializer(many=True, help_text="oldest first")
    total = serializers.IntegerField(
        help_text="events the filters match in all, whatever since and before"
    )
    limit = serializers.IntegerField()
    first_id = serializers.IntegerField(
        allow_null=True, help_text="for ?before= (null: no events)"
    )
    last_id = serializers.IntegerField(
        allow_null=True,
        help_text="for ?since= (no events: since, or null)",
    )


# --- traces -----------------------------------------------------------------------


class TraceSerializer(serializers.Serializer):
    trace_id = serializers.CharField(help_text="32 hexadecimal digits")
    root_span_id = serializers.CharField(
        allow_null=True, help_text="null: the root span has not arrived"
    )
    root_name = serializers.CharField(help_text="else the earliest span's")
    root_service = serializers.CharField()
    services = serializers.ListField(child=serializers.CharField())
    start = serializers.FloatField()
    end = serializers.FloatField()
    duration_ms = serializers.FloatField()
    span_count = serializers.IntegerField()
    error_count = serializers.IntegerField()
    error = serializers.BooleanField(help_text="a span ended in error")


class TraceListSerializer(PageSerializer):
    """A page of the traces that match the filters, and how many match."""

    traces = TraceSerializer(many=True, help_text="newest first (by start)")


class SpanEventSerializer(serializers.Serializer):
    name = serializers.CharField()
    timestamp = serializers.FloatField()
    attributes = OPEN()


class SpanSerializer(serializers.Serializer):
    span_id = serializers.CharField(help_text="16 hexadecimal digits")
    parent_span_id = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    service = serializers.CharField()
    kind = serializers.CharField(help_text=", ".join(SpanKind.values))
    start = serializers.FloatField()
    end = serializers.FloatField()
    duration_ms = serializers.FloatField()
    status = serializers.CharField(help_text=", ".join(SpanStatus.values))
    status_message = serializers.CharField()
    attributes = OPEN(help_text="as the sender gave them")
    events = SpanEventSerializer(many=True)
    orphan = serializers.BooleanField(
        help_text="its parent never arrived (or sits in a cycle, or too deep): "
        "shown at the top"
    )


# A span's children are spans: the field is added once the class exists.
SpanSerializer._declared_fields["children"] = SpanSerializer(
    many=True, help_text="by start"
)


class TraceTreeSerializer(TraceSerializer):
    truncated = serializers.BooleanField(
        help_text="more spans than one answer shows (the first by start are)"
    )
    spans = SpanSerializer(many=True, help_text="the top level, by start")


class SpansAcceptedSerializer(serializers.Serializer):
    """What POST /api/traces answers; its body is described with the other write
    bodies (sollol_site.schema.BODIES)."""

    status = serializers.CharField(help_text='"ok"')
    accepted = serializers.IntegerField(help_text="spans in the body")


# --- history ------------------------------------------------------------------------

POINT_FIELDS = (
    "t (epoch seconds), n (measurements), then the series' own columns by the "
    "names its domain registers (activity.history.Series): the share up "
    "(usable, serving, active, ...), a value and its _max (latency_ms, "
    "cpu_percent), a gauge (vram_used_bytes, memory_used_bytes), a count and a "
    "total (loaded_models, nodes_usable, nodes_total, workers, ...); null: not "
    "measured in the bucket"
)


class HistoryWindowSerializer(serializers.Serializer):
    series = serializers.CharField(help_text="node, backend, fleet, apps, ray, dask")
    window = serializers.FloatField(help_text="seconds")
    step = serializers.IntegerField(help_text="seconds of the rows read; 0: raw")
    resolution = serializers.ChoiceField(["raw", "minute", "hour"])
    since = serializers.FloatField()
    until = serializers.FloatField()
    bucket = serializers.IntegerField(
        help_text="seconds a point sums: whole steps, wider for long windows"
    )


class HistorySerializer(HistoryWindowSerializer):
    subject = serializers.IntegerField(help_text="its id; 0: a whole series")
    availability = serializers.FloatField(
        allow_null=True,
        help_text="share of the measurements up; null: none in the window",
    )
    measurements = serializers.IntegerField()
    points = serializers.ListField(
        child=OPEN(child=serializers.FloatField(allow_null=True)),
        help_text=f"oldest first, each an object of numbers: {POINT_FIELDS}",
    )


class HistoryRowsSerializer(HistoryWindowSerializer):
    fields = serializers.ListField(
        child=serializers.CharField(), help_text="what each row holds, in order"
    )
    subjects = OPEN(
        child=serializers.ListField(
            child=serializers.ListField(child=serializers.FloatField(allow_null=True))
        ),
        help_text="by id, the subjects measured in the window: rows of numbers "
        "(or null), oldest first, in the order of fields",
    )

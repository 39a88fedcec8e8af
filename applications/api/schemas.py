"""What the applications API answers and takes, described for the OpenAPI schema.

These serializers describe; they do not serialize. The answers are built by
applications.api.serializers.application_data (the one shape of an application,
in the API and the event stream alike), and tests check each answer against
these descriptions strictly (tests/openapi.py). An application's metadata is
whatever it reports: an open object.
"""

from __future__ import annotations

from rest_framework import serializers

from applications.api.serializers import APP_ID_PATTERN
from applications.choices import AppStatus
from core.schema import PageSerializer, label_map

APP_ID = f"^{APP_ID_PATTERN.pattern}$"


class ApplicationSerializer(serializers.Serializer):
    app_id = serializers.CharField()
    name = serializers.CharField()
    router_type = serializers.CharField(help_text='as it reports it, or ""')
    version = serializers.CharField(help_text='as it reports it, or ""')
    status = serializers.ChoiceField(
        AppStatus.choices, help_text="stale: no heartbeat within its deadline"
    )
    start_time = serializers.FloatField(help_text="registered at, epoch seconds")
    last_heartbeat = serializers.FloatField(help_text="epoch seconds")
    uptime_seconds = serializers.FloatField()
    last_seen_seconds = serializers.FloatField(help_text="since its last heartbeat")
    metadata = serializers.DictField(help_text="as it reports it; heartbeats merge")
    labels = label_map(
        "the operator's {name: value}, that alert rules and silences "
        "are scoped by: as its last report with labels (or metadata.labels) gave them"
    )


class ListedApplicationSerializer(ApplicationSerializer):
    availability = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="only with ?availability=: its share of the window active; "
        "null: not known in the window",
    )


class ApplicationListSerializer(PageSerializer):
    applications = ListedApplicationSerializer(many=True, help_text="by name")
    active = serializers.IntegerField(help_text="of total, after the filters")
    stale = serializers.IntegerField(help_text="of total, after the filters")


class UnregisterSerializer(serializers.Serializer):
    app_id = serializers.RegexField(APP_ID)


class UnregisteredSerializer(serializers.Serializer):
    status = serializers.CharField(help_text='"ok"')
    app_id = serializers.CharField()

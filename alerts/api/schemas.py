"""What the alerts API answers and takes, described for the OpenAPI schema.

These serializers describe; they do not serialize. The answers are built by
hand in alerts.api.views (alert_data, rule_data, ...) and the bodies checked by
alerts.validation; tests check each answer against these descriptions strictly
(tests/openapi.py). Times are epoch seconds.
"""

from __future__ import annotations

from rest_framework import serializers

from alerts.choices import AlertState, ChannelKind, DeliveryState, Severity, Source
from alerts.validation import MAX_SECONDS
from core.schema import label_map

# What a delivery tells (Delivery.status): an alert firing or resolved, or the
# test notification a person asked for.
NOTIFICATIONS = ["firing", "resolved", "test"]
GLOB = "a glob (fnmatch); empty: every one"
SELECTOR = (
    "on the subject's labels: {name: glob}, every name must be there with a "
    "value its glob matches; {}: every one"
)


def number(**options) -> serializers.FloatField:
    """A rule's number, as alerts.validation.number takes it."""
    return serializers.FloatField(min_value=0, max_value=MAX_SECONDS, **options)


def optional_text(max_length: int, **options) -> serializers.CharField:
    """Text a body may leave out, or send as null or "" (alike: none)."""
    return serializers.CharField(
        max_length=max_length,
        required=False,
        allow_null=True,
        allow_blank=True,
        **options,
    )


class AlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rule = serializers.CharField(help_text="the rule's name")
    subject = serializers.CharField(help_text="node host:port, app id, backend, ...")
    labels = label_map("the subject's labels when it was last evaluated")
    state = serializers.ChoiceField(AlertState.choices)
    severity = serializers.ChoiceField(Severity.choices)
    value = serializers.FloatField(allow_null=True, help_text="what the rule measured")
    message = serializers.CharField()
    started_at = serializers.FloatField(help_text="the condition first held")
    fired_at = serializers.FloatField(allow_null=True, help_text="null: still pending")
    ended_at = serializers.FloatField(allow_null=True, help_text="null: not resolved")
    silenced = serializers.BooleanField(help_text="a silence covers it")
    acked_by = serializers.CharField(allow_null=True, help_text="null: nobody is on it")
    acked_at = serializers.FloatField(allow_null=True)


class SilenceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rule = serializers.CharField(help_text=f"on the rule's name: {GLOB}")
    subject = serializers.CharField(help_text=f"on the subject: {GLOB}")
    labels = label_map(SELECTOR)
    starts_at = serializers.FloatField()
    ends_at = serializers.FloatField()
    created_by = serializers.CharField()
    comment = serializers.CharField()


class FailingChannelSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(ChannelKind.choices)
    since = serializers.FloatField()
    error = serializers.CharField(help_text="the last delivery's error")


class AlertOverviewSerializer(serializers.Serializer):
    alerts = AlertSerializer(many=True, help_text="in the state asked, newest first")
    firing = serializers.IntegerField(help_text="in all, whatever the state asked")
    pending = serializers.IntegerField()
    silenced = serializers.IntegerField(help_text="of the firing")
    silences = SilenceSerializer(many=True, help_text="in force, ending first first")
    channels_failing = FailingChannelSerializer(
        many=True, help_text="channels whose deliveries fail"
    )


class AckSerializer(serializers.Serializer):
    by = optional_text(150, help_text='who is on it; "api" if nobody is named')


class RuleSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField(help_text="the condition: one of the list's kinds")
    severity = serializers.ChoiceField(Severity.choices)
    threshold = serializers.FloatField(
        allow_null=True, help_text="null: the condition has none"
    )
    window_seconds = serializers.FloatField(help_text="measured over; 0: now")
    for_seconds = serializers.FloatField(help_text="true this long before it fires")
    repeat_seconds = serializers.FloatField(help_text="reminders; 0: none")
    subjects = serializers.CharField(help_text=GLOB)
    labels = label_map(SELECTOR)
    enabled = serializers.BooleanField()
    source = serializers.ChoiceField(Source.choices)
    description = serializers.CharField()


class RuleListSerializer(serializers.Serializer):
    rules = RuleSerializer(many=True, help_text="by name")
    kinds = serializers.ListField(
        child=serializers.CharField(), help_text="the conditions a rule may watch"
    )


class RuleChangeSerializer(serializers.Serializer):
    """The fields a PATCH changes; those left out keep their value."""

    severity = serializers.ChoiceField(Severity.choices, required=False)
    threshold = number(required=False, allow_null=True)
    window_seconds = number(required=False)
    for_seconds = number(required=False)
    repeat_seconds = number(required=False)
    subjects = optional_text(300, help_text=GLOB)
    labels = label_map(SELECTOR, required=False)
    enabled = serializers.BooleanField(required=False)


class NewRuleSerializer(RuleChangeSerializer):
    """A rule of a known kind: the kind's defaults, and what the body says."""

    name = serializers.CharField(max_length=100)
    kind = serializers.CharField(help_text="one of GET /api/alerts/rules' kinds")


class SilenceListSerializer(serializers.Serializer):
    silences = SilenceSerializer(many=True, help_text="in force")


class NewSilenceSerializer(serializers.Serializer):
    """Name a rule, a subject or labels, or several: never everything."""

    duration_seconds = serializers.FloatField(min_value=1, max_value=MAX_SECONDS)
    rule = optional_text(100, help_text=f"on the rule's name: {GLOB}")
    subject = optional_text(300, help_text=f"on the subject: {GLOB}")
    labels = label_map(SELECTOR, required=False)
    created_by = serializers.CharField(max_length=150)
    comment = serializers.CharField(max_length=1000, help_text="why")


class ChannelSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(ChannelKind.choices)
    url = serializers.CharField(help_text='"" for e-mail through SOLLOL_SMTP_URL')
    recipients = serializers.CharField(help_text="e-mail: addresses, comma-separated")
    has_secret = serializers.BooleanField(help_text="the secret itself is never shown")
    rules = serializers.CharField(help_text=f"on the rule's name: {GLOB}")
    min_severity = serializers.ChoiceField(Severity.choices)
    enabled = serializers.BooleanField()
    source = serializers.ChoiceField(Source.choices)
    failing_since = serializers.FloatField(
        allow_null=True, help_text="null: its last delivery went through"
    )
    last_error = serializers.CharField()


class ChannelListSerializer(serializers.Serializer):
    channels = ChannelSerializer(many=True, help_text="by name")


class ChannelChangeSerializer(serializers.Serializer):
    """The fields a PATCH changes; those left out keep their value."""

    kind = serializers.ChoiceField(ChannelKind.choices, required=False)
    url = optional_text(
        500,
        help_text="http(s) (smtp(s) for e-mail) to an address the dashboard may "
        "contact (SOLLOL_ALLOWED_NODE_CIDRS)",
    )
    recipients = optional_text(2000, help_text="e-mail: addresses, comma-separated")
    secret = optional_text(200, help_text="kept, never shown")
    rules = optional_text(300, help_text=f"on the rule's name: {GLOB}")
    min_severity = serializers.ChoiceField(Severity.choices, required=False)
    enabled = serializers.BooleanField(required=False)


class NewChannelSerializer(ChannelChangeSerializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(ChannelKind.choices)


class ChannelTestedSerializer(serializers.Serializer):
    status = serializers.CharField(help_text='"queued"')
    delivery = serializers.IntegerField(help_text="its id in the delivery log")


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField(help_text="the channel's name")
    status = serializers.ChoiceField(NOTIFICATIONS, help_text="what it tells")
    rule = serializers.CharField(help_text='the rule\'s name; "" for a test')
    state = serializers.ChoiceField(DeliveryState.choices)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField()
    created = serializers.FloatField()
    sent_at = serializers.FloatField(allow_null=True)
    next_attempt_at = serializers.FloatField()


class DeliveryListSerializer(serializers.Serializer):
    deliveries = DeliverySerializer(many=True, help_text="newest first")

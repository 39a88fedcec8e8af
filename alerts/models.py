"""Rules, the alerts they raise, silences, channels and every delivery attempt."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from alerts.choices import AlertState, ChannelKind, DeliveryState, Severity, Source


class Rule(models.Model):
    """When a condition (activity.alerting) held for `for_seconds`, alert.

    Scope: `subjects` is a glob on the finding's subject (node host:port, app id,
    backend); empty means every subject. `labels` is a selector (core/labels.py:
    {name: glob}) on the subject's labels; empty means every subject.
    """

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=40)  # an activity.alerting condition
    severity = models.CharField(max_length=16, choices=Severity.choices)
    threshold = models.FloatField(null=True, blank=True)
    window_seconds = models.FloatField(default=0)
    for_seconds = models.FloatField(default=30)
    repeat_seconds = models.FloatField(default=4 * 3600)
    subjects = models.CharField(max_length=300, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    description = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """One rule's verdict on one subject, from pending to resolved."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="alerts")
    subject = models.CharField(max_length=300)
    labels = models.JSONField(default=dict, blank=True)  # the subject's, as last seen
    state = models.CharField(max_length=16, choices=AlertState.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    value = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField()  # the condition first held
    fired_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)  # stopped holding
    ended_at = models.DateTimeField(null=True, blank=True)  # resolved
    # What was told: the firing and the resolution, each once; repeats after.
    notified_at = models.DateTimeField(null=True, blank=True)
    resolve_notified = models.BooleanField(default=False)
    silenced = models.BooleanField(default=False)  # when it was last looked at
    acked_by = models.CharField(max_length=150, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=~Q(state=AlertState.RESOLVED),
                name="one_open_alert_per_rule_and_subject",
            )
        ]
        indexes = [models.Index(fields=["state", "rule"], name="alert_state_rule")]

    def __str__(self) -> str:
        return f"{self.rule.name} {self.subject} {self.state}"


class Silence(models.Model):
    """No notifications for matching alerts until `ends_at` (they still show)."""

    rule = models.CharField(max_length=100, blank=True)  # glob on the rule's name
    subject = models.CharField(max_length=300, blank=True)  # glob on the subject
    labels = models.JSONField(default=dict, blank=True)  # selector on its labels
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(db_index=True)
    created_by = models.CharField(max_length=150)
    comment = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ends_at"]

    def __str__(self) -> str:
        return f"silence {self.rule or '*'} {self.subject or '*'} until {self.ends_at}"


class Channel(models.Model):
    """Where notifications go; scoped by rule (glob) and least severity."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    url = models.CharField(max_length=500, blank=True)  # webhooks, ntfy, Alertmanager
    recipients = models.TextField(blank=True)  # e-mail: comma-separated
    secret = models.CharField(max_length=200, blank=True)  # never shown back
    rules = models.CharField(max_length=300, blank=True)  # glob; empty: every rule
    min_severity = models.CharField(
        max_length=16, choices=Severity.choices, default=Severity.INFO
    )
    enabled = models.BooleanField(default=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Delivery(models.Model):
    """One notification to one channel, and how sending it went (the outbox)."""

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=16)  # firing / resolved / test
    rule = models.CharField(max_length=100, blank=True)
    payload = models.JSONField()  # the generic body: status, alerts, message
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due")
        ]

    def __str__(self) -> str:
        return f"{self.status} to {self.channel_id}: {self.state}"


class OpenAlertsVersion(models.Model):
    """One row: a new (random) version at every write to open alerts, so the
    evaluating process knows whether the open alerts it kept from its last round
    are still true (alerts.services.evaluate); no row means "not known"."""

    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"open alerts, version {self.version}"

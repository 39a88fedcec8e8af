from django.db import models

from activity import streams


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertState(models.TextChoices):
    PENDING = "pending", "Pending"  # true, not yet for the rule's "for"
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON)"
    SLACK = "slack", "Slack incoming webhook"
    DISCORD = "discord", "Discord webhook"
    NTFY = "ntfy", "ntfy topic"
    EMAIL = "email", "E-mail"
    ALERTMANAGER = "alertmanager", "Prometheus Alertmanager"


class DeliveryState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # gave up after its attempts


class Source(models.TextChoices):
    BUILTIN = "builtin", "Built in"
    FILE = "file", "SOLLOL_ALERT_RULES"
    ENV = "env", "Environment"
    API = "api", "API or admin"


ALERT_STREAM = streams.register("alerts", "Alerts")
# The periodic task that evaluates the rules (core.wakeups wakes it by this name).
EVALUATE_TASK = "alerts.tasks.evaluate_alerts"

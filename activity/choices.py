from django.db import models


class SpanKind(models.TextChoices):
    """What part a span plays in a call (OpenTelemetry SpanKind)."""

    UNSPECIFIED = "unspecified", "Unspecified"
    INTERNAL = "internal", "Internal"
    SERVER = "server", "Server"
    CLIENT = "client", "Client"
    PRODUCER = "producer", "Producer"
    CONSUMER = "consumer", "Consumer"


class SpanStatus(models.TextChoices):
    """How a span ended (OpenTelemetry StatusCode)."""

    UNSET = "unset", "Unset"
    OK = "ok", "OK"
    ERROR = "error", "Error"

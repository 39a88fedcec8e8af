from django.db import models


class Stream(models.TextChoices):
    """The live streams; each WebSocket path serves exactly one."""

    NODES = "nodes", "Ollama nodes"
    BACKENDS = "backends", "RPC backends"
    OLLAMA_ACTIVITY = "ollama_activity", "Model activity"
    APPLICATIONS = "applications", "Applications"
    LOGS = "logs", "Logs"
    FRAMEWORKS = "frameworks", "Frameworks"


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

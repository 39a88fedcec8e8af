from django.db import models


class Stream(models.TextChoices):
    """The live streams; each WebSocket path serves exactly one."""

    NODES = "nodes", "Ollama nodes"
    BACKENDS = "backends", "RPC backends"
    OLLAMA_ACTIVITY = "ollama_activity", "Model activity"
    APPLICATIONS = "applications", "Applications"
    LOGS = "logs", "Logs"

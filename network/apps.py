from django.apps import AppConfig


class NetworkConfig(AppConfig):
    name = "network"
    verbose_name = "Ollama nodes and RPC backends"

    def ready(self) -> None:
        from network import signals  # noqa: F401

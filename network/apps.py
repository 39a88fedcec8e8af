from django.apps import AppConfig


class NetworkConfig(AppConfig):
    name = "network"
    verbose_name = "Ollama nodes and RPC backends"

    def ready(self) -> None:
        from activity import metrics as activity_metrics
        from activity import prometheus
        from network import metrics, signals  # noqa: F401
        from network.services import recording

        prometheus.register(metrics.collect)
        activity_metrics.register_loaded_model_sizes(recording.loaded_model_sizes)

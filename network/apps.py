from django.apps import AppConfig


class NetworkConfig(AppConfig):
    name = "network"
    verbose_name = "Ollama nodes and RPC backends"

    def ready(self) -> None:
        from activity import metrics as activity_metrics
        from activity import prometheus
        from network import alerting, history, metrics, signals  # noqa: F401
        from network.gateway import live, shared
        from network.services import recording

        for collector in (
            metrics.nodes,
            metrics.gpus,
            metrics.backends,
            metrics.probe_cycles,
            metrics.gateway_load,
        ):
            prometheus.register(collector)
        activity_metrics.register_loaded_model_sizes(recording.loaded_model_sizes)
        # With the slots in Redis, this process shows what every gateway process
        # is doing, whether or not it serves the gateway itself.
        reader = shared.configured_reader()
        if reader is not None:
            live.register(reader.snapshot)

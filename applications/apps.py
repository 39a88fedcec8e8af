from django.apps import AppConfig


class ApplicationsConfig(AppConfig):
    name = "applications"
    verbose_name = "Applications"

    def ready(self) -> None:
        from activity import prometheus
        from applications import alerting, history, metrics  # noqa: F401  (they register)

        prometheus.register(metrics.applications)

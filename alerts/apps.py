from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from activity import prometheus
        from alerts import metrics, signals  # noqa: F401  (signals connects)

        prometheus.register(metrics.alerts)

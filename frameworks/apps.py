from django.apps import AppConfig


class FrameworksConfig(AppConfig):
    name = "frameworks"
    verbose_name = "Ray and Dask clusters"

    def ready(self) -> None:
        from activity import prometheus
        from frameworks import history, metrics  # noqa: F401  (history registers)

        prometheus.register(metrics.frameworks)

from django.apps import AppConfig


class ActivityConfig(AppConfig):
    name = "activity"
    verbose_name = "Activity and event log"

    def ready(self) -> None:
        from activity import prometheus, signals  # noqa: F401

        prometheus.register(prometheus.events)
        prometheus.register(prometheus.router)
        prometheus.register(prometheus.gateway)

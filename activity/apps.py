from django.apps import AppConfig


class ActivityConfig(AppConfig):
    name = "activity"
    verbose_name = "Activity and event log"

    def ready(self) -> None:
        from activity import signals  # noqa: F401

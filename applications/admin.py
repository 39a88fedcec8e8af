from django.contrib import admin
from django.utils import timezone

from activity.admin import RemovedThroughServices
from applications import services
from applications.models import Application


@admin.register(Application)
class ApplicationAdmin(RemovedThroughServices):
    """Applications report themselves; removing one here is unregistering it
    (app_unregistered, as when it stops), and it comes back if it still runs."""

    list_display = [
        "name",
        "app_id",
        "router_type",
        "version",
        "status",
        "last_heartbeat",
    ]
    list_filter = ["status", "router_type"]
    search_fields = ["name", "app_id"]

    def remove(self, app: Application) -> None:
        services.unregister_application(app.app_id, now=timezone.now())

from django.contrib import admin

from applications.models import Application


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
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
    readonly_fields = ["start_time", "last_heartbeat", "stale_after", "remove_after"]

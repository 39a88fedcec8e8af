from django.contrib import admin

from activity.models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "timestamp", "stream", "type", "message"]
    list_filter = ["stream", "type"]
    search_fields = ["message"]
    ordering = ["-id"]
    readonly_fields = ["stream", "type", "timestamp", "message", "payload"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

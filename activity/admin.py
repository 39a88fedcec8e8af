from django.contrib import admin

from activity.models import Event, Span, Trace


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


class ReadOnlyAdmin(admin.ModelAdmin):
    """Show rows that only ingest writes; the admin may look, never edit."""

    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Trace)
class TraceAdmin(ReadOnlyAdmin):
    list_display = ["trace_id", "start", "root_service", "root_name", "duration_ms"]
    list_display += ["span_count", "error_count"]
    search_fields = ["trace_id", "root_name"]
    ordering = ["-start"]


@admin.register(Span)
class SpanAdmin(ReadOnlyAdmin):
    list_display = ["trace_id", "span_id", "start", "service", "name", "duration_ms"]
    list_display += ["status"]
    list_filter = ["status", "kind"]
    search_fields = ["trace_id", "name"]
    ordering = ["-id"]

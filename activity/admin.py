from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from activity.models import Event, LogRecord, RequestRecord, Span, Trace


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


@admin.register(RequestRecord)
class RequestRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "timestamp", "source", "app_id", "node", "model"]
    list_display += ["latency_ms", "ok", "status_code", "error"]
    list_filter = ["source", "ok", "endpoint"]
    search_fields = ["app_id", "node", "model"]
    ordering = ["-id"]


@admin.register(LogRecord)
class LogRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "timestamp", "level", "logger", "app_id", "message"]
    list_filter = ["level"]
    search_fields = ["message", "logger", "app_id"]
    ordering = ["-id"]


class RemovedThroughServices(admin.ModelAdmin):
    """Rows whose state the probes or the application measure: shown, never edited
    by hand or added here, and removed only the way the API removes them
    (`remove(obj)`: an event every viewer sees, the removal remembered). A
    removal the service refuses (`refused`) is told, and nothing is deleted."""

    refused: tuple[type[Exception], ...] = ()
    show_full_result_count = False

    def remove(self, obj) -> None:
        raise NotImplementedError

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj) -> None:
        self.remove(obj)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            try:
                self.remove(obj)
            except self.refused as exc:
                self.message_user(request, f"{obj}: {exc}", messages.ERROR)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except self.refused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            meta = self.model._meta
            change = f"admin:{meta.app_label}_{meta.model_name}_change"
            return HttpResponseRedirect(reverse(change, args=[object_id]))

from django.contrib import admin

from frameworks.models import FrameworkSnapshot, FrameworkState


@admin.register(FrameworkState)
class FrameworkStateAdmin(admin.ModelAdmin):
    list_display = ["kind", "status", "dashboard_url", "changed_at"]


@admin.register(FrameworkSnapshot)
class FrameworkSnapshotAdmin(admin.ModelAdmin):
    list_display = ["kind", "status", "dashboard_url", "collected_at", "duration_ms"]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in FrameworkSnapshot._meta.fields]

from django.contrib import admin

from network.models import NodeStatusChange, OllamaNode, Removed, RpcBackend


class StatusChangeInline(admin.TabularInline):
    model = NodeStatusChange
    extra = 0
    readonly_fields = ["at", "old_status", "new_status", "reason"]
    can_delete = False


@admin.register(OllamaNode)
class OllamaNodeAdmin(admin.ModelAdmin):
    list_display = ["url", "status", "version", "latency_ms", "source", "last_seen"]
    list_filter = ["status", "source"]
    search_fields = ["url"]
    inlines = [StatusChangeInline]


@admin.register(RpcBackend)
class RpcBackendAdmin(admin.ModelAdmin):
    list_display = [
        "address",
        "status",
        "protocol",
        "latency_ms",
        "source",
        "last_seen",
    ]
    list_filter = ["status", "source"]
    search_fields = ["address"]


@admin.register(Removed)
class RemovedAdmin(admin.ModelAdmin):
    """What the operator removed; delete a row to let applications report it again."""

    list_display = ["key", "kind", "removed_at"]
    list_filter = ["kind"]
    search_fields = ["key"]

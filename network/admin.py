from django.contrib import admin

from core.httpclient import Credential
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
    readonly_fields = ["credential_shown"]

    @admin.display(description="credential")
    def credential_shown(self, node: OllamaNode) -> str:
        """Say which credential goes with the probes; the secret stays unshown."""
        credential = Credential.from_stored(node.credential)
        return credential.masked if credential else "none"


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

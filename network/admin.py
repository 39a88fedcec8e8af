from django.contrib import admin
from django.utils import timezone

from activity.admin import ReadOnlyAdmin, RemovedThroughServices
from core.httpclient import Credential
from network.models import (
    NodeStatusChange,
    OllamaNode,
    ProbeCycle,
    Removed,
    RpcBackend,
)
from network.services import lifecycle


class StatusChangeInline(admin.TabularInline):
    model = NodeStatusChange
    extra = 0
    readonly_fields = ["at", "old_status", "new_status", "reason"]
    can_delete = False


@admin.register(OllamaNode)
class OllamaNodeAdmin(RemovedThroughServices):
    """Nodes are added by the configuration, the API, discovery or applications;
    their status is what the probes measured."""

    refused = (lifecycle.StillConfigured,)
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

    def remove(self, node: OllamaNode) -> None:
        lifecycle.remove_node(node.id, now=timezone.now())


@admin.register(RpcBackend)
class RpcBackendAdmin(RemovedThroughServices):
    refused = (lifecycle.StillConfigured,)

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

    def remove(self, backend: RpcBackend) -> None:
        lifecycle.remove_backend(backend.id, now=timezone.now())


@admin.register(ProbeCycle)
class ProbeCycleAdmin(ReadOnlyAdmin):
    """Whether probing keeps up: the last cycle's figures and the sharded round."""

    list_display = ["name", "started_at", "seconds", "nodes", "backends", "changes"]
    list_display += ["round", "missed"]


@admin.register(Removed)
class RemovedAdmin(admin.ModelAdmin):
    """What the operator removed; delete a row to let applications report it again."""

    list_display = ["key", "kind", "removed_at"]
    list_filter = ["kind"]
    search_fields = ["key"]

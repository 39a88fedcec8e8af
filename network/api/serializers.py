"""The shapes of nodes and backends in the API, the page's snapshot and samples.

Events carry the same verdicts (network.services.events), so a pushed event and a
GET agree on what a node is.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast

from core import addresses
from core.httpclient import Credential
from core.jsonio import epoch, rounded
from core.pagination import Page
from network import status
from network.gateway import live
from network.models import OllamaNode, RpcBackend

_NODE_COLUMNS = (
    "id",
    "url",
    "kind",
    "host",
    "port",
    "status",
    "probe_status",
    "source",
    "credential",
    "version",
    "latency_ms",
    "latency_avg_ms",
    "vram_used_bytes",
    "consecutive_failures",
    "last_error",
    "last_seen",
    "last_probe",
    "serving",
    "gpus",
    "loaded_models_failed",
)


def node_data(node: OllamaNode) -> dict[str, Any]:
    """Return the node as the API shows it."""
    row = {column: getattr(node, column) for column in _NODE_COLUMNS}
    return {
        **_node_summary(row, live.node_load()),
        "labels": node.labels,
        "models": node.disk_models,
        "loaded_models": node.loaded_models,
    }


def node_rpc_backends(node: OllamaNode) -> list[str]:
    """The RPC backends this llama.cpp coordinator holds (network.recording), for
    the node's detail."""
    return list(
        RpcBackend.objects.filter(coordinator=node.address).values_list(
            "address", flat=True
        )
    )


def node_list_json(nodes: QuerySet[OllamaNode], page: Page | None = None) -> str:
    """Return ``{"nodes": [...], "total": n, ...}`` as JSON text, as node_data shows
    each: all of them, or one page (core.pagination) with its limit and offset.

    The models lists are the bulk of the list (1.7 MB for 1,000 nodes), and they are
    stored as JSON already: their text is copied from the database into the answer
    instead of being decoded into objects and encoded again (five times faster at
    1,000 nodes, see bench/RESULTS.md g). So are the labels.
    """
    rows = nodes.annotate(
        labels_json=Cast("labels", TextField()),
        models_json=Cast("disk_models", TextField()),
        loaded_json=Cast("loaded_models", TextField()),
    ).values_list(*_NODE_COLUMNS, "labels_json", "models_json", "loaded_json")
    if page is not None:
        total = nodes.count()
        rows = page.of(rows)
    parts = []
    load = live.node_load()
    for *columns, labels, models, loaded in rows:
        row = dict(zip(_NODE_COLUMNS, columns, strict=True))
        summary = _dumps(_node_summary(row, load))
        parts.append(
            f'{summary[:-1]},"labels":{labels},"models":{models},'
            f'"loaded_models":{loaded}}}'
        )
    if page is None:
        return f'{{"nodes":[{",".join(parts)}],"total":{len(parts)}}}'
    return (
        f'{{"nodes":[{",".join(parts)}],"total":{total},'
        f'"limit":{page.limit},"offset":{page.offset}}}'
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _node_summary(row: dict[str, Any], load: live.Load) -> dict[str, Any]:
    usable = status.node_usable(row["status"], row["probe_status"])
    credential = Credential.from_stored(row["credential"])
    address = addresses.host_port(row["host"], row["port"])
    in_flight, queued = load.get(address, (0, 0))
    return {
        "id": row["id"],
        "url": row["url"],
        "kind": row["kind"],
        "address": address,
        "status": row["status"],
        "source": row["source"],
        # Which credential goes with its probes ("bearer ***"), never the secret.
        "credential": credential.masked if credential else None,
        "version": row["version"],
        "latency_ms": rounded(row["latency_ms"]),
        "latency_avg_ms": rounded(row["latency_avg_ms"]),
        # A node that does not answer unloads nothing: what it held is unknown;
        # nor is it when its /api/ps fails while /api/version answers.
        "usable": usable,
        "loaded_models_known": status.models_known(usable, row["loaded_models_failed"]),
        "vram_used_bytes": row["vram_used_bytes"],
        "consecutive_failures": row["consecutive_failures"],
        "last_error": row["last_error"],
        "last_seen": epoch(row["last_seen"]),
        "last_probe": epoch(row["last_probe"]),
        # Requests through the gateway now: being answered, and waiting for a slot.
        "in_flight": in_flight,
        "queued": queued,
        # A server other than Ollama, as it says (network.servers): slots busy and
        # in all, requests running and waiting, KV-cache use, tokens/s.
        "serving": row["serving"] or None,
        # Its GPUs as its GPU exporter reads them (SOLLOL_GPU_EXPORTERS), or [].
        "gpus": row["gpus"],
    }


def node_history(node: OllamaNode) -> list[dict[str, Any]]:
    """Return the node's newest status changes, newest first."""
    limit = settings.SOLLOL_NODE_HISTORY
    return [
        {
            "at": change.at.timestamp(),
            "old_status": change.old_status,
            "new_status": change.new_status,
            "reason": change.reason,
        }
        for change in node.status_changes.all()[:limit]
    ]


def backend_data(backend: RpcBackend) -> dict[str, Any]:
    """Return the backend as the API shows it."""
    return {
        "id": backend.id,
        "address": backend.address,
        "host": backend.host,
        "port": backend.port,
        "status": backend.status,
        "usable": status.backend_usable(backend.status),
        "source": backend.source,
        "protocol": backend.protocol,
        "device_count": len(backend.devices),
        "devices": backend.devices,
        "latency_ms": rounded(backend.latency_ms),
        "consecutive_failures": backend.consecutive_failures,
        "last_error": backend.last_error,
        "last_seen": epoch(backend.last_seen),
        "last_probe": epoch(backend.last_probe),
        # The llama.cpp coordinator that holds it (host:port), and how that is
        # known: "declared" (SOLLOL_RPC_COORDINATORS) or "inferred"; "" for none.
        "coordinator": backend.coordinator,
        "coordinator_source": backend.coordinator_source,
        # The operator's {name: value}, that alert rules and silences are scoped by.
        "labels": backend.labels,
    }

"""The events the network makes: what a node, a backend or a model did, in words.

Lifecycle (a node found or removed) and recording (a probe's verdict) both announce
through these, so an event of a type has one shape wherever it comes from. Every
payload carries `usable` (network.status): clients take the verdict, not the
status list, to decide whether a node answers.
"""

from __future__ import annotations

from typing import Any

from activity import streams
from activity.services import NewEvent
from network import status
from network.choices import BACKEND_STREAM, NODE_STREAM, BackendStatus
from network.models import OllamaNode, RpcBackend


def node_event(type: str, node: OllamaNode, message: str, **extra) -> NewEvent:
    usable = status.node_usable(node.status, node.probe_status)
    payload = {
        "node": node.url,
        "node_id": node.id,
        "status": node.status,
        "usable": usable,
        "loaded_models_known": status.models_known(usable, node.loaded_models_failed),
        **extra,
    }
    return NewEvent(NODE_STREAM, type, message, payload)


def status_event(
    node: OllamaNode, old_status: str, reason: str, message: str, **extra
) -> NewEvent:
    return node_event(
        "status_change",
        node,
        message,
        old_status=old_status,
        new_status=node.status,
        reason=reason,
        **extra,
    )


def backend_event(type: str, backend: RpcBackend, message: str, **extra) -> NewEvent:
    payload = {
        "backend": backend.address,
        "backend_id": backend.id,
        "status": backend.status,
        "usable": status.backend_usable(backend.status),
        **extra,
    }
    return NewEvent(BACKEND_STREAM, type, message, payload)


def backend_transition(backend: RpcBackend, old_status: str) -> NewEvent | None:
    new_status = backend.status
    if new_status == old_status:
        return None
    if new_status == BackendStatus.ONLINE and old_status != BackendStatus.BUSY:
        devices = len(backend.devices)
        return backend_event(
            "backend_connected",
            backend,
            f"🔗 RPC backend connected: {backend.address} "
            f"(protocol {backend.protocol or '?'}, {devices} device(s))",
            old_status=old_status,
            new_status=new_status,
        )
    if new_status in status.BACKEND_DOWN and old_status not in (
        BackendStatus.UNKNOWN,
        *status.BACKEND_DOWN,
    ):
        return backend_event(
            "backend_disconnected",
            backend,
            f"🔌 RPC backend disconnected: {backend.address}",
            old_status=old_status,
            new_status=new_status,
            reason=backend.last_error,
        )
    return backend_event(
        "status_change",
        backend,
        f"RPC backend {backend.address}: {old_status} → {new_status}",
        old_status=old_status,
        new_status=new_status,
        reason=backend.last_error,
    )


def _model_key(model: dict[str, Any]) -> str:
    return model.get("name") or model.get("model") or "?"


def model_activity(
    node: OllamaNode, before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[NewEvent]:
    """Return what the models in memory did between two /api/ps snapshots.

    A model that appears was loaded, one that disappears was unloaded, and one
    whose expires_at moved forward was used: Ollama resets the keep-alive timer
    when a request finishes.
    """
    old = {_model_key(m): m for m in before}
    new = {_model_key(m): m for m in after}
    events = []
    for name, model in new.items():
        if name not in old:
            events.append(_activity_event("model_loaded", node, model))
        elif str(model.get("expires_at", "")) > str(old[name].get("expires_at", "")):
            events.append(_activity_event("model_processing", node, model))
    events.extend(
        _activity_event("model_unloaded", node, model)
        for name, model in old.items()
        if name not in new
    )
    return events


def _activity_event(type: str, node: OllamaNode, model: dict[str, Any]) -> NewEvent:
    size_vram = model.get("size_vram") or 0
    vram_gb = round(size_vram / 2**30, 2)
    name = _model_key(model)
    messages = {
        "model_loaded": f"✅ Model loaded on {node.address}: {name}",
        "model_unloaded": f"💤 Model unloaded on {node.address}: {name}",
        "model_processing": (
            f"🔄 Processing on {node.address}: {name} (VRAM: {vram_gb:.2f}GB)"
        ),
    }
    return NewEvent(
        streams.MODEL_ACTIVITY,
        type,
        messages[type],
        {
            "node": node.address,
            "node_url": node.url,
            "node_id": node.id,
            "model": name,
            "vram_gb": vram_gb,
            "size_vram": size_vram,
            "size": model.get("size") or 0,
        },
    )

"""Nodes and backends that applications report are watched like configured ones."""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.dispatch import receiver

from activity.signals import application_reported
from network.services import lifecycle


@receiver(application_reported, dispatch_uid="network_ensure_reported")
def watch_reported_fleet(sender, metadata: dict, now, **kwargs) -> None:
    if not any(key in metadata for key in ("nodes", "ollama_nodes", "rpc_backends")):
        return
    # After the app's own transaction: its events stay last in it (see record_events).
    transaction.on_commit(
        partial(lifecycle.ensure_reported, metadata, now=now), robust=True
    )

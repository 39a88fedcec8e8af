from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from network import cycle, discovery, services


@shared_task(name="network.tasks.probe_network")
def probe_network() -> dict:
    now = timezone.now()
    services.sync_configured(now=now)
    return cycle.run_cycle(now=now).as_dict()


@shared_task(name="network.tasks.scan_subnets")
def scan_subnets() -> dict:
    return discovery.scan_configured(now=timezone.now())


@shared_task(name="network.tasks.prune_node_history")
def prune_node_history() -> int:
    return services.prune_node_history(keep=settings.SOLLOL_NODE_HISTORY)

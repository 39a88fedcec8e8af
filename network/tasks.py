from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from network import cycle, discovery
from network.services import lifecycle, rounds


@shared_task(name="network.tasks.probe_network")
def probe_network() -> dict:
    """Probe the fleet: here, or (SOLLOL_PROBE_SHARD_SIZE > 0) in batches for workers.

    Sharded, each node and backend is in exactly one batch of a numbered round.
    Batches are acknowledged only when done: one whose worker died is delivered
    again (at once when a pool process dies, after the broker's visibility timeout
    when the whole worker does), and skips what was recorded in the round already.
    A batch still queued when the next round begins has expired: not probed twice.
    """
    now = timezone.now()
    lifecycle.sync_configured(now=now)
    size = settings.SOLLOL_PROBE_SHARD_SIZE
    if size <= 0:
        return cycle.run_cycle(now=now).as_dict()
    round, nodes, backends = rounds.begin_round()
    batches = [
        (nodes[i : i + size], backends[i : i + size])
        for i in range(0, max(len(nodes), len(backends)), size)
    ]
    for node_ids, backend_ids in batches:
        probe_batch.apply_async(
            (round, node_ids, backend_ids), expires=settings.SOLLOL_PROBE_INTERVAL
        )
    return {"round": round, "batches": len(batches)}


@shared_task(
    name="network.tasks.probe_batch", acks_late=True, reject_on_worker_lost=True
)
def probe_batch(round: int, node_ids: list[int], backend_ids: list[int]) -> dict:
    """Probe one shard of a round (see probe_network)."""
    return cycle.run_cycle(
        now=timezone.now(), node_ids=node_ids, backend_ids=backend_ids, round=round
    ).as_dict()


@shared_task(name="network.tasks.scan_subnets")
def scan_subnets() -> dict:
    return discovery.scan_configured(now=timezone.now())


@shared_task(name="network.tasks.prune_node_history")
def prune_node_history() -> int:
    return lifecycle.prune_node_history(keep=settings.SOLLOL_NODE_HISTORY)

"""Probe cycles and sharded rounds: numbered, timed, and shown at /api/network/health.

Two rows of ProbeCycle keep this (their names are ProbeCycle.Name): LAST_CYCLE
holds the figures of the last cycle (sharded: of the current round, summed over
its batches), ROUND numbers the sharded rounds and remembers what the last one
left unprobed.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from network.models import OllamaNode, ProbeCycle, RpcBackend

logger = logging.getLogger(__name__)


def begin_round() -> tuple[int, list[int], list[int]]:
    """Number a new sharded probe round; return it with every node and backend id."""
    with transaction.atomic():
        marker, _ = ProbeCycle.objects.select_for_update().get_or_create(
            name=ProbeCycle.Name.ROUND,
            defaults={
                "started_at": timezone.now(),
                "seconds": 0,
                "nodes": 0,
                "backends": 0,
                "changes": 0,
            },
        )
        # What the round now ending did not record: its batch's worker died, the
        # broker keeps the batch until its visibility timeout, and by then it has
        # expired (a pool child that dies is redelivered at once, within the
        # round). Those are in the round beginning now: one interval late.
        begun_before = marker.started_at
        marker.missed = sum(
            model.objects.filter(
                probe_round__lt=marker.round, created_at__lt=begun_before
            ).count()
            for model in (OllamaNode, RpcBackend)
        )
        if marker.round and marker.missed:
            logger.warning(
                "probe round %d left %d nodes and backends unprobed (a worker "
                "died with their batch?); they are in round %d",
                marker.round,
                marker.missed,
                marker.round + 1,
            )
        marker.round += 1
        marker.started_at = timezone.now()
        marker.save(update_fields=["round", "started_at", "missed"])
    nodes = list(OllamaNode.objects.order_by("id").values_list("id", flat=True))
    backends = list(RpcBackend.objects.order_by("id").values_list("id", flat=True))
    return marker.round, nodes, backends


def record_cycle(
    report: dict[str, Any], *, started_at: dt.datetime, round: int | None = None
) -> None:
    """Remember the last probe cycle; warn when probing cannot keep its interval.

    Sharded, a cycle is a whole round: each batch adds its nodes, backends and
    changes to its round's totals, and the round's time runs from its start to
    the end of its latest batch. A batch of an older round changes nothing.
    """
    if round is None:
        ProbeCycle.objects.update_or_create(
            name=ProbeCycle.Name.LAST_CYCLE,
            defaults={
                "started_at": started_at,
                "seconds": report["seconds"],
                "nodes": report["nodes"],
                "backends": report["backends"],
                "changes": report["changes"],
                "round": 0,
            },
        )
        seconds = report["seconds"]
        nodes, backends = report["nodes"], report["backends"]
    else:
        with transaction.atomic():
            marker = ProbeCycle.objects.filter(name=ProbeCycle.Name.ROUND).first()
            if marker is None or marker.round != round:
                return  # a straggler of an older round
            row, _ = ProbeCycle.objects.select_for_update().get_or_create(
                name=ProbeCycle.Name.LAST_CYCLE,
                defaults={
                    "started_at": marker.started_at,
                    "seconds": 0,
                    "nodes": 0,
                    "backends": 0,
                    "changes": 0,
                },
            )
            if row.round != round:
                row.round = round
                row.started_at = marker.started_at
                row.nodes = row.backends = row.changes = 0
                row.seconds = 0.0
            row.nodes += report["nodes"]
            row.backends += report["backends"]
            row.changes += report["changes"]
            elapsed = (timezone.now() - marker.started_at).total_seconds()
            row.seconds = max(row.seconds, elapsed)  # batches end in any order
            row.save()
        seconds, nodes, backends = row.seconds, row.nodes, row.backends
    if seconds > settings.SOLLOL_PROBE_INTERVAL:
        logger.warning(
            "probing %d nodes and %d backends took %.1fs, longer than the %.1fs "
            "interval",
            nodes,
            backends,
            seconds,
            settings.SOLLOL_PROBE_INTERVAL,
        )


def last_cycle() -> dict[str, Any] | None:
    """Return the last cycle's (or, sharded, the current round's) figures, or None."""
    cycle = ProbeCycle.objects.filter(name=ProbeCycle.Name.LAST_CYCLE).first()
    if cycle is None:
        return None
    return {
        "started_at": cycle.started_at.timestamp(),
        "seconds": cycle.seconds,
        "nodes": cycle.nodes,
        "backends": cycle.backends,
        "changes": cycle.changes,
        # Sharded probing: the numbered round these totals are for, and how many
        # nodes and backends the last finished round left unprobed (a worker died
        # with their batch; they were probed a round later).
        "round": cycle.round or None,
        "missed": _missed() if cycle.round else None,
    }


def _missed() -> dict[str, int] | None:
    marker = ProbeCycle.objects.filter(name=ProbeCycle.Name.ROUND).first()
    if marker is None or marker.round < 2:
        return None
    return {"round": marker.round - 1, "count": marker.missed}

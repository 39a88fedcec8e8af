"""Sharded probing: each node once per round, whatever happens to the workers."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils import timezone

from activity.models import Event
from network import tasks
from network.choices import Source
from network.cycle import run_cycle
from network.models import OllamaNode
from network.services import lifecycle, rounds
from simulator.ollama import running_fleet

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fleet():
    with running_fleet(5, base="127.0.0.2", port=0, seed=9) as fleet:
        lifecycle.ensure_nodes(fleet.urls, source=Source.CONFIG, now=timezone.now())
        yield fleet


def versions_asked(fleet) -> list[int]:
    return [node.requests["/api/version"] for node in fleet.nodes]


@override_settings(SOLLOL_PROBE_SHARD_SIZE=2, SOLLOL_DISCOVER_LOCALHOST=False)
def test_beat_enqueues_batches_that_cover_every_node_exactly_once(fleet, monkeypatch):
    sent = []

    def record(args, **options):  # a worker takes the batch at once
        sent.append((args, options))
        return tasks.probe_batch(*args)

    monkeypatch.setattr(tasks.probe_batch, "apply_async", record)
    report = tasks.probe_network()
    assert report["batches"] == 3
    batches = [args[1] for args, _ in sent]
    ids = sorted(i for batch in batches for i in batch)
    assert ids == sorted(OllamaNode.objects.values_list("id", flat=True))
    assert all(options["expires"] > 0 for _, options in sent)
    assert set(OllamaNode.objects.values_list("status", flat=True)) == {"healthy"}, (
        list(OllamaNode.objects.values_list("last_error", flat=True))
    )
    assert versions_asked(fleet) == [1] * 5
    rounds = set(OllamaNode.objects.values_list("probe_round", flat=True))
    assert rounds == {report["round"]}
    assert tasks.probe_network()["round"] == report["round"] + 1  # a new round
    assert versions_asked(fleet) == [2] * 5


def test_a_batch_delivered_again_probes_only_what_its_dead_worker_left(fleet):
    round, node_ids, _ = rounds.begin_round()
    # The first delivery recorded two nodes, then its worker died.
    run_cycle(now=timezone.now(), node_ids=node_ids[:2], round=round)
    events = Event.objects.count()
    assert versions_asked(fleet) == [1, 1, 0, 0, 0]
    # The broker delivers the whole batch again to another worker.
    report = tasks.probe_batch(round, node_ids, [])
    assert report["nodes"] == 3
    assert versions_asked(fleet) == [1, 1, 1, 1, 1]
    # And once more (say, the visibility timeout passed): nothing is probed twice.
    assert tasks.probe_batch(round, node_ids, [])["nodes"] == 0
    assert versions_asked(fleet) == [1] * 5
    discovered_and_healthy = Event.objects.count() - events
    assert discovered_and_healthy == 3  # one status_change per newly probed node


def test_a_result_recorded_late_for_an_old_round_changes_nothing(fleet):
    round, node_ids, _ = rounds.begin_round()
    run_cycle(now=timezone.now(), node_ids=node_ids, round=round)
    newer, _, _ = rounds.begin_round()
    run_cycle(now=timezone.now(), node_ids=node_ids, round=newer)
    fleet.nodes[0].die()
    # A straggler of the older round: its results must not overwrite newer ones.
    assert run_cycle(now=timezone.now(), node_ids=node_ids, round=round).nodes == 0
    assert OllamaNode.objects.get(id=node_ids[0]).status == "healthy"


def test_operators_see_the_whole_round_not_its_last_batch(fleet, client):
    round, node_ids, _ = rounds.begin_round()
    run_cycle(now=timezone.now(), node_ids=node_ids[:2], round=round)
    run_cycle(now=timezone.now(), node_ids=node_ids[2:4], round=round)
    # The first batch delivered again after its worker died: nothing new to count.
    tasks.probe_batch(round, node_ids[:2], [])
    run_cycle(now=timezone.now(), node_ids=node_ids[4:], round=round)

    cycle = client.get("/api/network/health").json()["probe_cycle"]
    assert (cycle["round"], cycle["nodes"], cycle["backends"]) == (round, 5, 0)
    assert cycle["changes"] == 5  # each node's first status
    assert cycle["seconds"] > 0
    scraped = client.get("/api/prometheus").content.decode()
    assert 'sollol_probe_cycle_duration_seconds{cycle="network"}' in scraped
    assert 'cycle="round"' not in scraped  # the round counter is not a cycle

    # A straggler of this round, once the next one began, counts for neither.
    newer, _, _ = rounds.begin_round()
    run_cycle(now=timezone.now(), node_ids=node_ids[:1], round=newer)
    run_cycle(now=timezone.now(), node_ids=node_ids[1:], round=round)
    cycle = client.get("/api/network/health").json()["probe_cycle"]
    assert (cycle["round"], cycle["nodes"], cycle["changes"]) == (newer, 1, 0)


@override_settings(SOLLOL_PROBE_SHARD_SIZE=0)
def test_an_unsharded_cycle_has_no_round(fleet, client):
    rounds.begin_round()  # left over from a time the operator sharded
    tasks.probe_network()
    cycle = client.get("/api/network/health").json()["probe_cycle"]
    assert cycle["round"] is None and cycle["nodes"] >= 5


def test_operators_see_what_a_dead_worker_left_unprobed(fleet, client, caplog):
    round, node_ids, _ = rounds.begin_round()
    # Two batches were recorded; the worker holding the third died with it.
    run_cycle(now=timezone.now(), node_ids=node_ids[:2], round=round)
    run_cycle(now=timezone.now(), node_ids=node_ids[2:4], round=round)

    newer, next_ids, _ = rounds.begin_round()
    assert set(next_ids) == set(node_ids)  # the missed one is in the next round
    assert f"probe round {round} left 1 nodes and backends unprobed" in caplog.text
    run_cycle(now=timezone.now(), node_ids=next_ids, round=newer)
    cycle = client.get("/api/network/health").json()["probe_cycle"]
    assert cycle["round"] == newer
    assert cycle["missed"] == {"round": round, "count": 1}

    rounds.begin_round()  # the round before it missed nothing
    cycle = client.get("/api/network/health").json()["probe_cycle"]
    assert cycle["missed"] == {"round": newer, "count": 0}

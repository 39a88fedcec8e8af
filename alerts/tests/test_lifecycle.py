"""Rules checked against what the probes wrote: pending, firing, resolved, told once.

Each test moves time by hand (evaluate(now)) and reads what would be sent: the
deliveries queued for a channel (alerts.delivery sends them; test_delivery.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activity.metrics import parse_activity, record_requests
from activity.services import NewEvent, record_events
from alerts import services
from alerts.choices import AlertState, ChannelKind
from alerts.models import Alert, Channel, Delivery, Rule, Silence
from core import wakeups
from network.models import OllamaNode, RpcBackend

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
FOR = 10.0


@pytest.fixture(autouse=True)
def rules():
    with override_settings(SOLLOL_ALERT_FOR=FOR):
        services.ensure_builtin_rules()
    # One down node of one is also a critical fleet: its own test below.
    Rule.objects.filter(name="fleet_critical").update(enabled=False)
    Channel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, url="http://x/")


def node(number: int, status: str = "healthy") -> OllamaNode:
    return OllamaNode.objects.create(
        url=f"http://127.0.0.{number}:11434",
        host=f"127.0.0.{number}",
        port=11434,
        source="config",
        status=status,
        created_at=T0,
    )


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def told(status: str | None = None) -> list[dict]:
    """The notifications queued (for the one channel), oldest first."""
    rows = Delivery.objects.order_by("id")
    if status:
        rows = rows.filter(status=status)
    return [d.payload for d in rows]


def set_status(target: OllamaNode, status: str) -> None:
    OllamaNode.objects.filter(id=target.id).update(status=status)


def test_a_dead_node_is_pending_then_firing_then_resolved_told_twice():
    victim = node(2, "offline")
    services.evaluate(at(0))
    [alert] = Alert.objects.all()
    assert (alert.rule.name, alert.subject, alert.state) == (
        "node_down", "127.0.0.2:11434", AlertState.PENDING,
    )  # fmt: skip
    assert told() == []
    services.evaluate(at(FOR - 1))
    assert told() == []  # not yet its "for"
    services.evaluate(at(FOR))
    [firing] = told("firing")
    assert firing["status"] == "firing"
    [entry] = firing["alerts"]
    assert entry["rule"] == "node_down" and entry["subject"] == "127.0.0.2:11434"
    assert entry["severity"] == "critical" and entry["ended_at"] is None
    assert entry["started_at"] == at(FOR).isoformat().replace("+00:00", "Z")
    assert "127.0.0.2:11434" in firing["message"]
    # Back: it must stay back as long as "for" before it is resolved.
    set_status(victim, "healthy")
    services.evaluate(at(FOR + 2))
    assert Alert.objects.get().state == AlertState.FIRING
    services.evaluate(at(2 * FOR + 2))
    assert Alert.objects.get().state == AlertState.RESOLVED
    [resolved] = told("resolved")
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["ended_at"] is not None
    services.evaluate(at(3 * FOR))
    assert len(told()) == 2  # once firing, once resolved


def test_a_condition_shorter_than_for_tells_nothing():
    victim = node(2, "unhealthy")
    services.evaluate(at(0))
    set_status(victim, "healthy")
    services.evaluate(at(FOR / 2))
    services.evaluate(at(2 * FOR))
    assert told() == [] and not Alert.objects.exists()


def test_ten_nodes_dying_together_are_one_notification_listing_ten():
    nodes = [node(n, "offline") for n in range(2, 12)]
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    [firing] = told("firing")
    assert len(firing["alerts"]) == 10
    assert {a["subject"] for a in firing["alerts"]} == {
        f"127.0.0.{n}:11434" for n in range(2, 12)
    }
    assert "and" not in firing["message"] or "more" in firing["message"]
    for each in nodes:
        set_status(each, "healthy")
    services.evaluate(at(FOR + 1))
    services.evaluate(at(2 * FOR + 1))
    [resolved] = told("resolved")
    assert len(resolved["alerts"]) == 10


def test_nodes_dying_over_one_minute_are_one_notification_and_a_later_one_its_own():
    # Ten nodes die 6 s apart, each found at once: the first holds "for" at FOR,
    # the last at 54 + FOR. One notification, when the last has held its "for".
    nodes = [node(n) for n in range(2, 12)]
    for second in range(0, 60 + int(FOR) + 1):
        if second % 6 == 0 and second // 6 < len(nodes):
            set_status(nodes[second // 6], "offline")
        services.evaluate(at(second))
        if second < 54 + FOR:
            assert told() == [], f"told at {second} s, before the last fired"
    [firing] = told("firing")
    assert len(firing["alerts"]) == 10
    # One that dies two minutes later is not held back by anything: told at its "for".
    late = node(12, "offline")
    services.evaluate(at(180))
    services.evaluate(at(180 + FOR))
    assert [len(p["alerts"]) for p in told("firing")] == [10, 1]
    assert told("firing")[1]["alerts"][0]["subject"] == late.url.removeprefix("http://")


def test_a_firing_alert_waits_at_most_a_minute_for_others_of_its_rule():
    # A second node goes down 5 s after the first and comes back before its "for":
    # the first is held while the second is pending, then told alone.
    first, second = node(2, "offline"), node(3)
    services.evaluate(at(0))
    set_status(second, "offline")
    services.evaluate(at(5))
    services.evaluate(at(FOR))
    assert told() == []  # the second would fire at FOR + 5
    set_status(second, "healthy")
    services.evaluate(at(FOR + 1))  # it never fired: its pending alert is gone
    [firing] = told("firing")
    assert [a["subject"] for a in firing["alerts"]] == ["127.0.0.2:11434"]
    assert first.status == "offline"


def test_a_node_that_flaps_40_times_a_minute_is_told_at_most_twice():
    victim = node(2, "offline")
    services.evaluate(at(0))
    services.evaluate(at(FOR))  # down long enough: firing, told
    second = FOR
    for flip in range(40):
        second += 1.5
        set_status(victim, "healthy" if flip % 2 == 0 else "offline")
        services.evaluate(at(second))
    set_status(victim, "healthy")
    services.evaluate(at(second + 1))
    services.evaluate(at(second + FOR + 1))
    assert [p["status"] for p in told()] == ["firing", "resolved"]


def test_a_fleet_with_no_usable_node_is_critical():
    Rule.objects.filter(name="fleet_critical").update(enabled=True)
    node(2, "offline")
    services.evaluate(at(0))
    assert {a.rule.name for a in Alert.objects.all()} == {"node_down", "fleet_critical"}
    node(3, "healthy")
    services.evaluate(at(1))
    assert {a.rule.name for a in Alert.objects.all()} == {"node_down"}


def test_a_rejected_node_is_not_down():
    node(2, "rejected")
    node(3, "unknown")
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    assert not Alert.objects.exists()


def test_the_localhost_guess_that_never_answered_alerts_nothing():
    Rule.objects.filter(name="fleet_critical").update(enabled=True)
    OllamaNode.objects.create(
        url="http://127.0.0.1:11434", host="127.0.0.1", port=11434,
        source="localhost", status="not_found", created_at=T0,
    )  # fmt: skip
    RpcBackend.objects.create(
        address="127.0.0.1:50052", host="127.0.0.1", port=50052,
        source="localhost", status="not_found", created_at=T0,
    )  # fmt: skip
    services.evaluate(at(0))
    services.evaluate(at(FOR + 1))
    assert not Alert.objects.exists() and told() == []


def test_a_silenced_alert_shows_silenced_and_is_told_when_the_silence_ends():
    node(2, "offline")
    Silence.objects.create(
        subject="127.0.0.2:*",
        starts_at=at(0),
        ends_at=at(FOR + 5),
        created_by="ops",
        comment="maintenance",
    )
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    alert = Alert.objects.get()
    assert alert.state == AlertState.FIRING and alert.silenced
    assert told() == []
    services.evaluate(at(FOR + 6))  # the silence is over, the node still down
    assert not Alert.objects.get().silenced
    assert [p["status"] for p in told()] == ["firing"]


def test_a_firing_alert_is_told_again_after_its_repeat_unless_acknowledged():
    node(2, "offline")
    Rule.objects.filter(name="node_down").update(repeat_seconds=60)
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    services.evaluate(at(FOR + 30))
    assert len(told()) == 1
    services.evaluate(at(FOR + 61))
    assert len(told()) == 2  # a reminder
    services.acknowledge(Alert.objects.get(), "ops", at(FOR + 62))
    services.evaluate(at(FOR + 200))
    assert len(told()) == 2


def test_rules_are_scoped_changed_and_disabled():
    node(2, "offline")
    node(3, "offline")
    Rule.objects.filter(name="node_down").update(subjects="127.0.0.3:*")
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    assert [a.subject for a in Alert.objects.all()] == ["127.0.0.3:11434"]
    Rule.objects.filter(name="node_down").update(enabled=False)
    services.evaluate(at(FOR + 1))
    assert Alert.objects.get().state == AlertState.RESOLVED
    assert [p["status"] for p in told()] == ["firing", "resolved"]


def test_channels_get_only_the_rules_and_severities_they_ask_for():
    Channel.objects.create(
        name="pager", kind=ChannelKind.WEBHOOK, url="http://y/", min_severity="critical"
    )
    Channel.objects.create(
        name="apps-only", kind=ChannelKind.WEBHOOK, url="http://z/", rules="app_*"
    )
    node(2, "unauthorized")  # a warning
    node(3, "offline")  # critical
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    sent = sorted(
        (d.channel.name, d.rule) for d in Delivery.objects.select_related("channel")
    )
    assert sent == [
        ("hook", "node_down"),
        ("hook", "node_unauthorized"),
        ("pager", "node_down"),
    ]


def test_gpu_memory_and_saturation_use_what_the_probes_read():
    gpu_node = node(2)
    OllamaNode.objects.filter(id=gpu_node.id).update(
        gpus=[
            {"index": 0, "memory_total": 100, "memory_used": 95},
            {"index": 1, "memory_total": 0, "memory_used": 50},  # size unknown
        ]
    )
    busy = node(3)
    OllamaNode.objects.filter(id=busy.id).update(
        serving={"slots_busy": 4, "slots_total": 4, "requests_waiting": 2}
    )
    services.evaluate(at(0))
    found = {(a.rule.name, a.subject, a.value) for a in Alert.objects.all()}
    assert found == {
        ("gpu_memory_high", "127.0.0.2:11434", 0.95),
        ("node_saturated", "127.0.0.3:11434", 2.0),
    }


def test_slow_requests_and_a_model_no_usable_node_has_are_found():
    quick, slow, down = node(2), node(3), node(4, "offline")
    OllamaNode.objects.filter(id=quick.id).update(
        disk_models=[{"name": "llama3.2:latest"}]
    )
    OllamaNode.objects.filter(id=down.id).update(disk_models=[{"name": "qwen3:8b"}])
    reports = (
        [{"node": quick.address, "model": "llama3.2", "latency_ms": 800}] * 20
        + [{"node": slow.address, "model": "llama3.2", "latency_ms": 900}] * 18
        + [{"node": slow.address, "model": "llama3.2", "latency_ms": 45_000}] * 2
        # Asked for, held only by a node that is down: nobody can serve it.
        + [{"node": down.address, "model": "qwen3:8b", "latency_ms": 5, "ok": False}]
    )
    record_requests(parse_activity({"requests": reports}), now=at(0))
    services.evaluate(at(0))
    found = {(a.rule.name, a.subject) for a in Alert.objects.all()}
    assert found == {
        ("latency_p99", slow.address),
        ("model_unavailable", "qwen3:8b"),
        ("node_down", down.address),
    }
    p99 = Alert.objects.get(rule__name="latency_p99").value
    assert 30_000 < p99 <= 45_000
    # Later, the slow minute is out of the window and a node has the model.
    OllamaNode.objects.filter(id=quick.id).update(
        disk_models=[{"name": "llama3.2:latest"}, {"name": "qwen3:8b"}]
    )
    services.evaluate(at(400))
    services.evaluate(at(400 + FOR))
    still = {a.rule.name for a in Alert.objects.exclude(state=AlertState.RESOLVED)}
    assert still == {"node_down"}


def test_a_condition_that_cannot_be_read_leaves_its_alerts_alone(monkeypatch):
    node(2, "offline")
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    from activity import alerting

    broken = alerting.conditions()["node_down"]

    def fails(check):
        raise RuntimeError("database away")

    monkeypatch.setitem(
        alerting._conditions,
        "node_down",
        broken.__class__(**{**vars(broken), "find": fails}),
    )
    services.evaluate(at(3 * FOR))
    assert Alert.objects.get().state == AlertState.FIRING  # not resolved by a failure
    assert [p["status"] for p in told()] == ["firing"]


def test_prometheus_counts_firing_alerts_by_rule(client):
    node(2, "offline")
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    text = client.get("/api/prometheus", HTTP_HOST="127.0.0.1").content.decode()
    assert 'sollol_alerts_firing{rule="node_down",severity="critical"} 1' in text
    assert 'sollol_alerts_firing{rule="app_stale",severity="warning"} 0' in text


def test_now_is_aware():
    assert timezone.is_aware(at(0))


def test_old_resolved_alerts_and_their_notifications_are_pruned(settings):
    settings.SOLLOL_ALERT_RETENTION = 3600
    victim = node(2, "offline")
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    set_status(victim, "healthy")
    services.evaluate(at(FOR + 1))
    services.evaluate(at(2 * FOR + 1))
    Delivery.objects.update(state="sent")
    node(3, "offline")  # a newer alert, still open
    services.evaluate(at(3600))
    assert services.prune(at(3600 + FOR)) == {
        "alerts": 0,
        "silences": 0,
        "deliveries": 0,
    }
    pruned = services.prune(at(2 * FOR + 3602))
    assert pruned["alerts"] == 1 and pruned["deliveries"] == 2
    assert [a.subject for a in Alert.objects.all()] == ["127.0.0.3:11434"]


def test_committed_events_wake_the_evaluation_and_its_next_due_is_told(
    django_capture_on_commit_callbacks,
):
    woken: list[str] = []
    unsubscribe = wakeups.subscribe(woken.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record_events(
                [NewEvent(stream="nodes", type="status_change", message="x")],
                now=at(0),
            )
        assert woken == ["alerts.tasks.evaluate_alerts"]
        with django_capture_on_commit_callbacks(execute=True):
            record_events(
                [NewEvent(stream="alerts", type="alert_firing", message="x")],
                now=at(0),
            )
        assert woken == ["alerts.tasks.evaluate_alerts"]  # its own: no wake
        with django_capture_on_commit_callbacks(execute=True):
            record_events(
                [
                    NewEvent(
                        stream="ollama_activity", type="model_processing", message="x"
                    )
                ],
                now=at(0),
            )
        assert woken == ["alerts.tasks.evaluate_alerts"]  # routers' reports: none
    finally:
        unsubscribe()
    node(2, "offline")
    # Pending: it fires FOR seconds after it began, if it still holds then.
    assert services.evaluate(at(0))["next_in_ms"] == FOR * 1000
    assert services.evaluate(at(3))["next_in_ms"] == (FOR - 3) * 1000
    counts = services.evaluate(at(FOR))
    assert counts["fired"] == 1 and "next_in_ms" not in counts


def kept_and_stored() -> tuple[list, list]:
    """The open alerts this process kept after its last round, and the database's."""
    assert services._kept.version is not None
    return (
        sorted(dataclasses.astuple(row) for row in services._kept.rows),
        sorted(dataclasses.astuple(row) for row in services._open_rows()),
    )


def test_the_open_alerts_kept_between_rounds_are_what_the_database_holds():
    nodes = [node(number) for number in range(2, 8)]
    for second in range(0, 300, 3):
        for index, each in enumerate(nodes):  # each flaps at its own pace
            down = (second // (3 * (index + 1))) % 2 == 0
            set_status(each, "offline" if down else "healthy")
        services.evaluate(at(second))
        kept, stored = kept_and_stored()
        assert kept == stored, second
    assert {"firing", "resolved"} <= {p["status"] for p in told()}


def test_a_round_with_nothing_new_reads_no_open_alert():
    node(2, "offline")
    services.evaluate(at(0))
    services.evaluate(at(FOR))  # firing, written
    with CaptureQueriesContext(connection) as queries:
        services.evaluate(at(FOR + 1))
    read = [q["sql"] for q in queries if 'FROM "alerts_alert"' in q["sql"]]
    assert not [sql for sql in read if "pending" in sql and "firing" in sql], read


WRITES = ("SAVEPOINT", "BEGIN", "INSERT", "UPDATE", "DELETE")


def writes_of(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]


def test_a_round_that_changes_nothing_takes_no_write_lock():
    """On SQLite a transaction takes the write lock at BEGIN, and the heartbeats'
    writer waited behind every round: a round that moves nothing reads outside any
    transaction and writes nothing."""
    victim = node(2, "offline")
    services.evaluate(at(0))
    services.evaluate(at(FOR))  # firing, written and told
    for second in (1, 2, 3):
        with CaptureQueriesContext(connection) as queries:
            services.evaluate(at(FOR + second))
        assert writes_of(queries) == [], second
    assert Alert.objects.get().state == AlertState.FIRING
    # What moves is written, in a transaction: cleared, then resolved and told.
    set_status(victim, "healthy")
    with CaptureQueriesContext(connection) as queries:
        services.evaluate(at(FOR + 4))
    assert writes_of(queries)[0].startswith("SAVEPOINT")
    assert Alert.objects.get().cleared_at == at(FOR + 4)
    services.evaluate(at(2 * FOR + 4))
    assert Alert.objects.get().state == AlertState.RESOLVED
    assert [p["status"] for p in told()] == ["firing", "resolved"]


def test_open_alerts_written_elsewhere_are_read_again():
    victim = node(2, "offline")
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    services.acknowledge(Alert.objects.get(), "ops", at(FOR + 1))
    services.evaluate(at(FOR + 2))
    kept, stored = kept_and_stored()
    assert kept == stored and services._kept.rows[0].acked_by == "ops"
    # Another process's round (PostgreSQL: one evaluator at a time, not always
    # this one) resolved it and said so; this one must not resolve it again.
    set_status(victim, "healthy")
    Alert.objects.update(state=AlertState.RESOLVED, ended_at=at(FOR + 3))
    services.changed_open_alerts()
    services.evaluate(at(FOR + 30))
    assert services._kept.rows == []
    assert not Alert.objects.filter(state__in=services.OPEN).exists()


def test_a_round_that_failed_keeps_nothing_and_the_next_reads_the_database(
    monkeypatch,
):
    node(2, "offline")
    services.evaluate(at(0))

    def fails(*args):
        raise RuntimeError("the database went away mid-round")

    monkeypatch.setattr(services, "plan_notifications", fails)
    with pytest.raises(RuntimeError):
        services.evaluate(at(FOR))  # moved its alert to firing, then rolled back
    monkeypatch.undo()
    assert Alert.objects.get().state == AlertState.PENDING
    services.evaluate(at(FOR + 1))
    assert Alert.objects.get().state == AlertState.FIRING
    assert [p["status"] for p in told()] == ["firing"]


@pytest.fixture
def racks(monkeypatch):
    """Nodes labelled as the network would label them (its labeller replaced)."""
    from activity import alerting

    labelled = {"127.0.0.2:11434": {"rack": "a1", "env": "prod"}}
    labelled["127.0.0.3:11434"] = {"rack": "b1", "env": "prod"}
    monkeypatch.setitem(alerting._labellers, "node", lambda: dict(labelled))
    return labelled


def test_a_rule_scoped_by_labels_alerts_only_on_subjects_it_picks(racks):
    node(2, "offline")
    node(3, "offline")
    node(4, "offline")  # no labels: a selector never picks it
    Rule.objects.filter(name="node_down").update(labels={"rack": "a*"})
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    [alert] = Alert.objects.all()
    assert alert.subject == "127.0.0.2:11434"
    assert alert.labels == {"rack": "a1", "env": "prod"}
    [firing] = told("firing")
    assert firing["alerts"][0]["labels"] == {"rack": "a1", "env": "prod"}
    # The node moves to another rack: the rule no longer picks it.
    racks["127.0.0.2:11434"] = {"rack": "b2", "env": "prod"}
    services.evaluate(at(FOR + 1))
    services.evaluate(at(2 * FOR + 1))
    assert Alert.objects.get().state == AlertState.RESOLVED


def test_a_silence_by_label_quiets_what_it_picks_and_shows_it(racks):
    node(2, "offline")
    node(3, "offline")
    services.silence("", "", 3600, "ops", "rack b recabled", at(0), {"rack": "b*"})
    services.evaluate(at(0))
    services.evaluate(at(FOR))
    alerts = {a.subject: a for a in Alert.objects.all()}
    assert alerts["127.0.0.3:11434"].silenced
    assert not alerts["127.0.0.2:11434"].silenced
    [firing] = told("firing")
    assert [a["subject"] for a in firing["alerts"]] == ["127.0.0.2:11434"]
    # A subject's labels that change are the alert's next round.
    racks["127.0.0.2:11434"] = {"rack": "b3"}
    services.evaluate(at(FOR + 1))
    again = Alert.objects.get(subject="127.0.0.2:11434")
    assert again.labels == {"rack": "b3"} and again.silenced


def test_the_networks_own_labels_scope_rules_and_reach_the_alert():
    """Without a stand-in: the labels the network stores on nodes and backends."""
    labelled = node(2, "offline")
    OllamaNode.objects.filter(id=labelled.id).update(labels={"rack": "a1"})
    node(3, "offline")
    RpcBackend.objects.create(
        address="127.0.0.4:50052", host="127.0.0.4", port=50052, source="config",
        status="offline", created_at=T0, labels={"rack": "a1"},
    )  # fmt: skip
    Rule.objects.filter(name__in=["node_down", "backend_down"]).update(
        labels={"rack": "a*"}
    )
    services.evaluate(at(0))
    picked = {(a.rule.name, a.subject): a.labels for a in Alert.objects.all()}
    assert picked == {
        ("node_down", "127.0.0.2:11434"): {"rack": "a1"},
        ("backend_down", "127.0.0.4:50052"): {"rack": "a1"},
    }

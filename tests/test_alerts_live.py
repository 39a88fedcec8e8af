"""Alerting end to end: a node dies, the operator hears of it; it comes back, too.

The dashboard (`manage.py serve`, its own process) probes two simulated nodes and
sends its notifications to a webhook receiver and a real SMTP server, both on
loopback, configured only through the environment (the zero-file setup).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest
import requests
from aiosmtpd.controller import Controller

from alerts.tests.receivers import Mailbox, Receiver
from simulator.ollama import running_fleet
from tests.liveserver import free_port
from tests.production import REDIS, Celery

pytestmark = pytest.mark.live

FOR = 2.0


def wait_for(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout:g} s")


def test_a_dead_node_is_told_by_webhook_and_e_mail_and_so_is_its_return(
    live_server_factory,
):
    hook = Receiver()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        with running_fleet(2, base="127.0.0.2", port=0, seed=21) as fleet:
            victim, other = fleet.nodes
            dashboard = live_server_factory(
                SOLLOL_OLLAMA_NODES=",".join(fleet.urls),
                SOLLOL_DISCOVER_LOCALHOST="false",
                SOLLOL_PROBE_INTERVAL="1",
                SOLLOL_PROBE_TIMEOUT="1",
                SOLLOL_ALERT_FOR=str(FOR),
                SOLLOL_ALERT_EVALUATE_INTERVAL="0.5",
                SOLLOL_ALERT_WEBHOOKS=hook.url + "/alerts",
                SOLLOL_ALERT_EMAIL_TO="ops@example.org",
                SOLLOL_SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
            )
            dashboard.start()

            def statuses():
                nodes = requests.get(
                    f"{dashboard.url}/api/network/nodes", timeout=5
                ).json()["nodes"]
                return {n["address"]: n["status"] for n in nodes}

            wait_for(
                lambda: set(statuses().values()) == {"healthy"}, "two healthy nodes"
            )
            killed = time.monotonic()
            victim.die()
            [(path, headers, body)] = wait_for(lambda: list(hook.received), "webhook")
            took = time.monotonic() - killed
            assert took <= FOR + 2.0, took
            firing = json.loads(body)
            assert path == "/alerts" and firing["status"] == "firing"
            [alert] = firing["alerts"]
            assert (alert["rule"], alert["subject"]) == ("node_down", victim.address)
            [(to, mail)] = wait_for(lambda: list(mailbox.messages), "e-mail", 5)
            assert to == ["ops@example.org"] and victim.address in mail["Subject"]
            listed = requests.get(f"{dashboard.url}/api/alerts", timeout=5).json()
            assert [
                (a["rule"], a["subject"], a["state"]) for a in listed["alerts"]
            ] == [("node_down", victim.address, "firing")]
            metrics = requests.get(f"{dashboard.url}/api/prometheus", timeout=5).text
            assert (
                'sollol_alerts_firing{rule="node_down",severity="critical"} 1'
                in metrics
            )

            victim.revive()
            wait_for(lambda: len(hook.received) == 2, "the resolved webhook", 15)
            resolved = json.loads(hook.received[1][2])
            assert resolved["status"] == "resolved"
            assert resolved["alerts"][0]["ended_at"] is not None
            wait_for(lambda: len(mailbox.messages) == 2, "the resolved e-mail", 5)
            assert "RESOLVED" in mailbox.messages[1][1]["Subject"]
            time.sleep(1.0)
            assert len(hook.received) == 2  # told once each way, nothing more
            deliveries = requests.get(
                f"{dashboard.url}/api/alerts/deliveries", timeout=5
            ).json()["deliveries"]
            assert sorted(
                (d["channel"], d["status"], d["state"]) for d in deliveries
            ) == [
                ("email", "firing", "sent"),
                ("email", "resolved", "sent"),
                ("webhook-1", "firing", "sent"),
                ("webhook-1", "resolved", "sent"),
            ]
    finally:
        smtp.stop()
        hook.close()


def test_two_dashboards_on_one_database_tell_each_change_once(live_server_factory):
    """Both evaluate and send; one is killed mid-alert and started again."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("several dashboards share a database on PostgreSQL only")
    hook = Receiver()
    try:
        with running_fleet(2, base="127.0.0.2", port=0, seed=22) as fleet:
            victim, _ = fleet.nodes
            env = {
                "SOLLOL_OLLAMA_NODES": ",".join(fleet.urls),
                "SOLLOL_DISCOVER_LOCALHOST": "false",
                "SOLLOL_PROBE_INTERVAL": "1",
                "SOLLOL_PROBE_TIMEOUT": "1",
                "SOLLOL_ALERT_FOR": str(FOR),
                "SOLLOL_ALERT_EVALUATE_INTERVAL": "0.2",
                "SOLLOL_ALERT_WEBHOOKS": hook.url,
            }
            first = live_server_factory(**env)
            first.start()
            second = live_server_factory(database=first.database, **env)
            second.start()
            victim.die()
            wait_for(lambda: hook.received, "the firing webhook")
            first.stop(signal.SIGKILL)  # mid-alert, without a goodbye
            time.sleep(1.0)
            victim.revive()
            wait_for(lambda: len(hook.received) >= 2, "the resolved webhook", 15)
            first.start()  # back: it must not tell anything again
            time.sleep(2.0)
    finally:
        hook.close()
    statuses = [json.loads(body)["status"] for _, _, body in hook.received]
    assert statuses == ["firing", "resolved"]


def test_in_production_each_notification_is_a_celery_task_and_a_hung_channel_stalls_no_other(  # noqa: E501
    database, tmp_path, live_server_factory
):
    """daphne, beat and a worker as deploy/ runs them: the worker evaluates and
    sends; a webhook that never answers holds up neither the other channel nor
    the probes."""
    hung = Receiver(answers=[None] * 20)
    hook = Receiver()
    worker = beat = None
    try:
        with running_fleet(2, base="127.0.0.2", port=0, seed=23) as fleet:
            victim, _ = fleet.nodes
            env = {
                "DATABASE_URL": database,
                "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
                "SOLLOL_CHANNEL_PREFIX": f"notify{uuid.uuid4().hex[:8]}",
                "SOLLOL_CELERY_QUEUE": f"notify-{uuid.uuid4().hex[:8]}",
                "SOLLOL_OLLAMA_NODES": ",".join(fleet.urls),
                "SOLLOL_DISCOVER_LOCALHOST": "false",
                "SOLLOL_PROBE_INTERVAL": "1",
                "SOLLOL_PROBE_TIMEOUT": "1",
                "SOLLOL_ALERT_FOR": str(FOR),
                "SOLLOL_ALERT_EVALUATE_INTERVAL": "0.5",
                "SOLLOL_ALERT_SEND_TIMEOUT": "4",
                "SOLLOL_ALERT_WEBHOOKS": f"{hung.url}/hung,{hook.url}/alerts",
                "SOLLOL_DATA_DIR": str(tmp_path / "data"),
                "SOLLOL_CAPTURE_LOGS": "false",
            }
            web = live_server_factory("daphne", **env)
            web.start(timeout=60)  # migrates the database first
            celery_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
            # deploy/systemd/sollol-worker.service's concurrency
            worker = Celery("worker", celery_env, tmp_path, concurrency=4)
            beat = Celery("beat", celery_env, tmp_path)

            def statuses():
                nodes = requests.get(f"{web.url}/api/network/nodes", timeout=5).json()
                return {n["address"]: n["status"] for n in nodes["nodes"]}

            wait_for(
                lambda: set(statuses().values()) == {"healthy"}, "two healthy nodes", 60
            )
            killed = time.monotonic()
            victim.die()
            [(_, _, body)] = wait_for(lambda: list(hook.received), "webhook")
            assert time.monotonic() - killed <= FOR + 3.0
            assert json.loads(body)["status"] == "firing"
            wait_for(lambda: hung.received, "the hung channel's attempt", 5)

            victim.revive()  # the hung channel is still holding its sender
            wait_for(lambda: len(hook.received) == 2, "the resolved webhook", 15)
            assert json.loads(hook.received[1][2])["status"] == "resolved"
            assert set(statuses().values()) == {"healthy"}  # probes went on

            def hung_deliveries():
                listed = requests.get(f"{web.url}/api/alerts/deliveries", timeout=5)
                return [
                    d
                    for d in listed.json()["deliveries"]
                    if d["channel"] == "webhook-1" and d["last_error"]
                ]

            [told, *_] = wait_for(hung_deliveries, "the hung channel's error", 15)
            assert "no answer within 4 s" in told["last_error"]
            log = worker.log()
            assert "alerts.tasks.send_delivery" in log and "succeeded" in log
    except BaseException:
        for process in (worker, beat):
            if process is not None:
                print(process.log()[-4000:])
        raise
    finally:
        for process in (beat, worker):
            if process is not None:
                process.stop()
        hung.close()
        hook.close()

"""The production topology, for real: two daphne processes, a Celery worker and beat.

All on the machine's PostgreSQL and Redis, in a database and a channel prefix and a
queue of this test's own. Probing is sharded (one node per batch), so the events
about nodes are produced in the worker; both daphne processes must push them to
their WebSocket clients, and what is written through one is read through the other.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable

import pytest
import requests
from websockets.sync.client import connect

from simulator.ollama import running_fleet
from tests.production import REDIS, Celery


def probe_rounds(url: str) -> list[int]:
    """Return the sharded round that last recorded each node."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        rows = conn.execute("SELECT probe_round FROM network_ollamanode").fetchall()
    return [row[0] for row in rows]


def status_changes(url: str) -> dict[str, list[tuple[str, str]]]:
    """Return each node's (old, new) status changes from the event log, in order."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT payload->>'node', payload->>'old_status', payload->>'new_status'"
            " FROM activity_event WHERE type = 'status_change' ORDER BY id"
        ).fetchall()
    changes: dict[str, list[tuple[str, str]]] = {}
    for node, old, new in rows:
        changes.setdefault(node, []).append((old, new))
    return changes


def stored_events(url: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
        return conn.execute(
            "SELECT id, stream, type, timestamp FROM activity_event ORDER BY id"
        ).fetchall()


class Stream:
    """A WebSocket stream read on a thread; every message is kept, in order."""

    def __init__(self, url: str) -> None:
        self.socket = connect(url, open_timeout=10, legacy=True)
        self.messages: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.socket:
                self.messages.put(json.loads(message))
        except Exception:
            return

    def wait_for(self, wanted: Callable[[dict], bool], timeout: float) -> dict:
        """Return the first message, seen already or arriving, that is wanted.

        Events about different nodes come in any order: what does not match one
        wait may be what the next one looks for.
        """
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for message in self.seen[checked:]:
                if wanted(message):
                    return message
            checked = len(self.seen)
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"no such message within {timeout}s; got {self.seen!r}"[:3000]
                )
            try:
                self.seen.append(self.messages.get(timeout=left))
            except queue.Empty:
                continue

    def close(self) -> None:
        self.socket.close()
        self.thread.join(5)


def test_events_from_the_worker_reach_clients_of_every_web_process(
    database, tmp_path, live_server_factory
):
    with running_fleet(2, base="127.0.0.2", port=0, seed=21) as fleet:
        env = {
            "DATABASE_URL": database,
            "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
            "SOLLOL_CHANNEL_PREFIX": f"scale{uuid.uuid4().hex[:8]}",
            "SOLLOL_CELERY_QUEUE": f"scale-{uuid.uuid4().hex[:8]}",
            "SOLLOL_OLLAMA_NODES": ",".join(fleet.urls),
            "SOLLOL_DISCOVER_LOCALHOST": "false",
            "SOLLOL_PROBE_INTERVAL": "1",
            "SOLLOL_PROBE_TIMEOUT": "1",
            "SOLLOL_PROBE_SHARD_SIZE": "1",
            "SOLLOL_DATA_DIR": str(tmp_path / "data"),
            "SOLLOL_CAPTURE_LOGS": "false",
        }
        first = live_server_factory("daphne", **env)
        first.start(timeout=60)  # migrates the shared database first
        second = live_server_factory("daphne", **env)
        second.start(timeout=60)
        streams = [
            Stream(server.url.replace("http", "ws") + "/ws/network/nodes")
            for server in (first, second)
        ]
        apps_on_second = Stream(second.url.replace("http", "ws") + "/ws/applications")
        celery_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        processes = [
            Celery("worker", celery_env, tmp_path),
            Celery("beat", celery_env, tmp_path),
        ]
        try:
            for stream in streams:
                for url in fleet.urls:
                    stream.wait_for(
                        lambda m, url=url: (
                            m["type"] == "status_change"
                            and m["node"] == url
                            and m["new_status"] == "healthy"
                        ),
                        timeout=60,
                    )
            fleet.nodes[0].die()
            for stream in streams:
                stream.wait_for(
                    lambda m: (
                        m["type"] == "status_change"
                        and m["node"] == fleet.urls[0]
                        and m["new_status"] in ("unhealthy", "offline")
                    ),
                    timeout=15,
                )
            # Sharded: the probes were batches of numbered rounds, run by the worker
            # (daphne runs no periodic jobs at all).
            assert "probe_batch" in processes[0].log()
            assert min(probe_rounds(database)) >= 1
            registered = requests.post(
                first.url + "/api/applications/register",
                json={"app_id": "scale-app", "name": "Scale App"},
                timeout=5,
            )
            assert registered.status_code == 200
            listed = requests.get(second.url + "/api/applications", timeout=5).json()
            assert [a["app_id"] for a in listed["applications"]] == ["scale-app"]
            event = apps_on_second.wait_for(
                lambda m: m["type"] == "app_registered", timeout=10
            )
            assert event["app_id"] == "scale-app"
        except BaseException:
            for process in processes:
                print(process.log()[-3000:])
            print("EVENTS IN THE DATABASE:", stored_events(database))
            raise
        finally:
            for stream in [*streams, apps_on_second]:
                stream.close()
            for process in processes:
                process.stop()


def test_a_worker_killed_mid_probe_costs_one_round_and_repeats_no_event(
    database, tmp_path, live_server_factory
):
    with running_fleet(2, base="127.0.0.2", port=0, seed=22) as fleet:
        env = {
            "DATABASE_URL": database,
            "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
            "SOLLOL_CHANNEL_PREFIX": f"kill{uuid.uuid4().hex[:8]}",
            "SOLLOL_CELERY_QUEUE": f"kill-{uuid.uuid4().hex[:8]}",
            "SOLLOL_OLLAMA_NODES": ",".join(fleet.urls),
            "SOLLOL_DISCOVER_LOCALHOST": "false",
            "SOLLOL_PROBE_INTERVAL": "1",
            "SOLLOL_PROBE_TIMEOUT": "3",
            "SOLLOL_PROBE_SHARD_SIZE": "1",
            "SOLLOL_DATA_DIR": str(tmp_path / "data"),
        }
        web = live_server_factory("daphne", **env)
        web.start(timeout=60)
        nodes = Stream(web.url.replace("http", "ws") + "/ws/network/nodes")
        celery_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        beat = Celery("beat", celery_env, tmp_path)
        worker = Celery("worker", celery_env, tmp_path)
        replacement = None
        try:
            for url in fleet.urls:
                nodes.wait_for(
                    lambda m, url=url: (
                        m.get("new_status") == "healthy" and m["node"] == url
                    ),
                    timeout=60,
                )
            # The first node hangs: each probe of it now takes the 3 s timeout.
            fleet.nodes[0].hang()
            time.sleep(1.5)  # its batch is running now
            worker.kill()  # the whole worker, pool and all, mid-task
            replacement = Celery("worker", celery_env, tmp_path, name="replacement")
            # The next rounds run on the new worker: the hanging node is found out.
            nodes.wait_for(
                lambda m: (
                    m.get("new_status") == "unhealthy" and m["node"] == fleet.urls[0]
                ),
                timeout=40,
            )
            fleet.nodes[0].hang(False)
            nodes.wait_for(
                lambda m: (
                    m.get("new_status") == "healthy"
                    and m["node"] == fleet.urls[0]
                    and m["id"] > 4
                ),
                timeout=40,
            )
            time.sleep(3)  # a few more rounds, and any delivery left over
            assert "probe_batch" in replacement.log()
            # Every status change in the log, per node, starts where the one
            # before it ended: nothing was recorded twice, nothing out of order.
            for transitions in status_changes(database).values():
                assert all(a[1] == b[0] for a, b in itertools.pairwise(transitions))
        except BaseException:
            for process in (worker, beat, replacement):
                if process is not None:
                    print(process.log()[-3000:])
            raise
        finally:
            nodes.close()
            for process in (worker, beat, replacement):
                if process is not None:
                    process.stop()

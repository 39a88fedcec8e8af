"""The sollol client library against a real dashboard process (and a scripted one)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sollol import DashboardClient
from tests.liveserver import REPO, free_port, wait_for


def listed(server) -> dict[str, dict[str, Any]]:
    """Return the applications the dashboard lists, by app_id."""
    response = requests.get(server.url + "/api/applications", timeout=2)
    response.raise_for_status()
    return {app["app_id"]: app for app in response.json()["applications"]}


def sollol_warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "sollol.client" and record.levelno >= logging.WARNING
    ]


@pytest.fixture
def make_client(monkeypatch) -> Iterator[Callable[..., DashboardClient]]:
    """Make DashboardClients with a fast heartbeat; close them after the test."""
    monkeypatch.delenv("SOLLOL_API_TOKEN", raising=False)
    clients: list[DashboardClient] = []

    def make(dashboard_url: str, **kwargs: Any) -> DashboardClient:
        kwargs.setdefault("app_name", "Test App")
        kwargs.setdefault("heartbeat_interval", 0.2)
        client = DashboardClient(dashboard_url=dashboard_url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def thread_errors(monkeypatch) -> list[threading.ExceptHookArgs]:
    """Collect exceptions that end a thread (they would reach no one otherwise)."""
    errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    return errors


def test_it_imports_without_django():
    script = "import sys, sollol; print([m for m in sys.modules if 'django' in m])"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.live
def test_it_registers_once_the_dashboard_comes_up(live_server_factory, make_client):
    server = live_server_factory()
    started = time.monotonic()
    client = make_client(
        server.url,
        app_name="Early App",
        router_type="HybridRouter",
        version="1.2.3",
        metadata={"env": "prod"},
    )
    assert time.monotonic() - started < 1.5
    assert not client.wait_registered(0.3)

    server.start()

    app = wait_for(lambda: listed(server).get(client.app_id), timeout=8)
    assert app["name"] == "Early App"
    assert app["router_type"] == "HybridRouter"
    assert app["version"] == "1.2.3"
    assert app["metadata"] == {"env": "prod"}
    assert app["status"] == "active"
    assert client.wait_registered(2)


@pytest.mark.live
def test_it_reappears_after_the_dashboard_forgets_it(live_dashboard, make_client):
    client = make_client(live_dashboard.url, metadata={"env": "prod"})
    assert client.wait_registered(5)
    first = wait_for(lambda: listed(live_dashboard).get(client.app_id))

    response = requests.post(
        f"{live_dashboard.url}/api/applications/{client.app_id}/unregister", timeout=2
    )
    assert response.status_code == 200

    # A new row, not the old one: the dashboard really had dropped the app.
    again = wait_for(
        lambda: (
            (app := listed(live_dashboard).get(client.app_id))
            and app["start_time"] > first["start_time"]
            and app
        )
    )
    assert again["name"] == "Test App"
    assert again["metadata"] == {"env": "prod"}
    assert again["status"] == "active"


@pytest.mark.live
def test_it_keeps_reporting_across_a_dashboard_restart(
    live_server_factory, make_client, caplog, thread_errors
):
    caplog.set_level(logging.INFO, logger="sollol.client")
    server = live_server_factory()
    server.start()
    client = make_client(server.url, metadata={"env": "prod"})
    assert client.wait_registered(5)

    server.stop()
    time.sleep(1.0)  # several heartbeats fail while it is down
    server.start()
    back = time.time()

    app = wait_for(
        lambda: (
            (app := listed(server).get(client.app_id))
            and app["last_heartbeat"] > back
            and app
        )
    )
    assert app["status"] == "active"
    assert app["metadata"] == {"env": "prod"}
    assert client.registered
    assert len(sollol_warnings(caplog)) == 1, sollol_warnings(caplog)
    assert not thread_errors


@pytest.mark.live
def test_it_pushes_metadata_changes_at_once(live_dashboard, make_client):
    client = make_client(
        live_dashboard.url, metadata={"env": "prod"}, heartbeat_interval=30
    )
    assert client.wait_registered(5)
    wait_for(lambda: client.app_id in listed(live_dashboard))

    pushed = time.monotonic()
    client.update_metadata({"requests": 5})

    wait_for(
        lambda: (
            listed(live_dashboard)[client.app_id]["metadata"]
            == {"env": "prod", "requests": 5}
        ),
        timeout=3,
    )
    assert time.monotonic() - pushed < 3
    assert client.metadata == {"env": "prod", "requests": 5}


@pytest.mark.live
def test_it_unregisters_when_closed(live_dashboard, make_client):
    client = make_client(live_dashboard.url)
    assert client.wait_registered(5)
    assert client.app_id in listed(live_dashboard)

    client.close()
    client.close()  # a second close is harmless

    assert client.app_id not in listed(live_dashboard)
    assert not client.registered


@pytest.mark.live
def test_it_unregisters_when_the_with_block_ends(live_dashboard, monkeypatch):
    monkeypatch.delenv("SOLLOL_API_TOKEN", raising=False)
    with DashboardClient(
        "Scoped App", dashboard_url=live_dashboard.url, heartbeat_interval=0.2
    ) as client:
        assert client.wait_registered(5)
        assert client.app_id in listed(live_dashboard)

    assert client.app_id not in listed(live_dashboard)


@pytest.mark.live
def test_it_unregisters_when_the_program_exits(live_dashboard, monkeypatch):
    monkeypatch.delenv("SOLLOL_API_TOKEN", raising=False)
    script = textwrap.dedent(
        """
        import sys
        from sollol import DashboardClient

        client = DashboardClient(
            "Short Lived", dashboard_url=sys.argv[1], heartbeat_interval=0.2
        )
        if not client.wait_registered(5):
            sys.exit("not registered")
        print(client.app_id)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, live_dashboard.url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    app_id = result.stdout.strip()
    assert app_id  # printed only once the dashboard had registered it
    assert app_id not in listed(live_dashboard)


@pytest.mark.live
def test_it_sends_the_api_token(
    live_server_factory, make_client, monkeypatch, caplog, thread_errors
):
    server = live_server_factory(SOLLOL_API_TOKEN="s3cret")
    server.start()
    with_token = make_client(server.url, api_token="s3cret")
    without = make_client(server.url)
    wrong = make_client(server.url, api_token="guess")
    monkeypatch.setenv("SOLLOL_API_TOKEN", "s3cret")
    from_env = make_client(server.url)

    assert with_token.wait_registered(5)
    assert from_env.wait_registered(5)
    time.sleep(1.0)  # the others retry, refused, meanwhile

    apps = listed(server)
    assert with_token.app_id in apps and from_env.app_id in apps
    assert without.app_id not in apps and wrong.app_id not in apps
    assert not without.registered and not wrong.registered
    # One warning for each refused client, not one per retry.
    assert len(sollol_warnings(caplog)) == 2, sollol_warnings(caplog)
    assert not thread_errors


def test_it_never_raises_when_the_dashboard_is_unreachable(make_client, thread_errors):
    started = time.monotonic()
    client = make_client(f"http://127.0.0.1:{free_port()}", metadata={"env": "prod"})
    client.update_metadata({"requests": 1})
    assert time.monotonic() - started < 1.5

    assert not client.wait_registered(1.0)
    client.update_metadata({"requests": 2})
    closing = time.monotonic()
    client.close()
    assert time.monotonic() - closing < 1.5
    assert client.metadata == {"env": "prod", "requests": 2}
    assert not thread_errors


def test_it_bounds_close_when_the_dashboard_hangs(make_client, thread_errors):
    # Accepts connections (the kernel does) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = make_client(url, timeout=5.0)
        time.sleep(0.2)  # the first register is now waiting for an answer

        closing = time.monotonic()
        client.close(timeout=0.5)
        assert time.monotonic() - closing < 2.0  # not the request's 5 s
    assert not thread_errors


class ScriptedDashboard:
    """A local HTTP server that records requests and answers heartbeats as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict | None]] = []
        self.times: list[float] = []  # time.monotonic() of each request
        self.heartbeat_statuses: list[int] = []
        # {"register", "heartbeat", "activity" or "logs": [seconds a 429 asks to
        # wait, ...]}, in turn; busy: the same with 503 (the writer's queue full).
        self.slow_down: dict[str, list[float]] = {}
        self.busy: dict[str, list[float]] = {}
        dashboard = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else None
                dashboard.requests.append((self.path, body))
                dashboard.times.append(time.monotonic())
                status, answer = 200, {"status": "ok", "registered": False}
                retry_after = None
                kind = self.path.rsplit("/", 1)[-1]
                slow, busy = dashboard.slow_down.get(kind), dashboard.busy.get(kind)
                if slow:
                    status, retry_after = 429, slow.pop(0)
                    answer = {"error": "too many writes for this application"}
                elif busy:
                    status, retry_after = 503, busy.pop(0)
                    answer = {"error": "too many writes are waiting; try again shortly"}
                elif self.path.endswith("/heartbeat") and dashboard.heartbeat_statuses:
                    status = dashboard.heartbeat_statuses.pop(0)
                    answer = {"error": "no application with that app_id"}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()

    def paths(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for path, _ in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted_dashboard() -> Iterator[ScriptedDashboard]:
    dashboard = ScriptedDashboard()
    yield dashboard
    dashboard.close()


def test_it_registers_again_when_a_heartbeat_gets_404(scripted_dashboard, make_client):
    scripted_dashboard.heartbeat_statuses = [404]
    client = make_client(scripted_dashboard.url, metadata={"env": "prod"})

    wait_for(
        lambda: (
            scripted_dashboard.paths()[:4]
            == ["register", "heartbeat", "register", "heartbeat"]
        )
    )
    _, second_register = scripted_dashboard.requests[2]
    assert second_register == {
        "app_id": client.app_id,
        "name": "Test App",
        "router_type": "unknown",
        "version": "0.0.0",
        "metadata": {"env": "prod"},
    }
    assert client.registered


def test_it_waits_as_long_as_a_429_asks_keeping_what_it_had_to_send(
    scripted_dashboard, make_client
):
    """Slowed by the dashboard's limit, it comes back when told (not at once, not
    after a growing backoff), still registered, with nothing it had to say lost."""
    scripted_dashboard.slow_down = {"register": [1, 1], "heartbeat": [1]}
    client = make_client(scripted_dashboard.url, metadata={"env": "prod"})
    assert client.wait_registered(10)
    registers = [
        at
        for (path, _), at in zip(
            scripted_dashboard.requests, scripted_dashboard.times, strict=True
        )
        if path.endswith("/register")
    ]
    assert len(registers) == 3
    gaps = [b - a for a, b in zip(registers, registers[1:], strict=False)]
    assert all(1.0 <= gap < 2.5 for gap in gaps), gaps

    client.update_metadata({"requests": 7})  # its heartbeat is answered 429 once
    wait_for(
        lambda: any(
            path.endswith("/heartbeat")
            and (body or {}).get("metadata", {}).get("requests") == 7
            for path, body in scripted_dashboard.requests[-3:]
        ),
        timeout=5,
    )
    assert client.registered


def test_its_reports_wait_as_a_429_or_503_asks_and_arrive_whole_once(
    scripted_dashboard, make_client
):
    """Reports refused for now (429: the app's own limit; 503: the writer's queue
    full) are sent again when the dashboard says, each once, in order, and the
    app stays registered meanwhile."""
    scripted_dashboard.slow_down = {"activity": [1]}
    scripted_dashboard.busy = {"activity": [1]}
    client = make_client(scripted_dashboard.url, heartbeat_interval=30)
    assert client.wait_registered(5)
    for i in range(3):
        client.record_request(node="127.0.0.2:11434", model="m", latency_ms=i)

    def reports() -> list[tuple[float, dict]]:
        return [
            (at, body)
            for (path, body), at in zip(
                scripted_dashboard.requests, scripted_dashboard.times, strict=True
            )
            if path == "/api/activity"
        ]

    wait_for(lambda: len(reports()) == 3, timeout=10)
    time.sleep(0.5)  # nothing more comes: what was stored is not sent again
    sent = reports()
    assert len(sent) == 3
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:], strict=False)]
    assert all(1.0 <= gap < 2.5 for gap in gaps), gaps  # when told, no sooner
    for _, body in sent:  # the same batch each time, whole and in order
        assert [r["latency_ms"] for r in body["requests"]] == [0, 1, 2]
    assert client.registered
    assert scripted_dashboard.paths().count("register") == 1


def test_it_sends_only_the_changed_keys(scripted_dashboard, make_client):
    client = make_client(
        scripted_dashboard.url,
        metadata={"env": "prod", "region": "eu"},
        heartbeat_interval=30,
    )
    assert client.wait_registered(5)

    client.update_metadata({"requests": 5})

    wait_for(lambda: len(scripted_dashboard.requests) == 2, timeout=2)
    path, heartbeat = scripted_dashboard.requests[1]
    assert path == "/api/applications/heartbeat"
    assert heartbeat["metadata"] == {"requests": 5}
    assert heartbeat["app_id"] == client.app_id
    assert heartbeat["name"] == "Test App"


def test_it_sends_its_labels_in_every_full_report(scripted_dashboard, make_client):
    """Labels go with the registration and each full heartbeat (a dashboard that
    forgot the app registers it again from one), not with changed keys alone."""
    client = make_client(
        scripted_dashboard.url, labels={"team": "search"}, heartbeat_interval=30
    )
    assert client.wait_registered(5)
    client.update_metadata({"requests": 5})
    wait_for(lambda: len(scripted_dashboard.requests) == 2, timeout=2)
    assert client.heartbeat() is True  # a full one, now

    [(_, registration), (_, changed), (_, full)] = scripted_dashboard.requests
    assert registration["labels"] == {"team": "search"}
    assert changed["metadata"] == {"requests": 5} and "labels" not in changed
    assert full["labels"] == {"team": "search"}


@pytest.mark.live
def test_the_dashboard_shows_its_labels(live_dashboard, make_client):
    client = make_client(live_dashboard.url, labels={"team": "search"})
    assert client.wait_registered(10)
    assert listed(live_dashboard)[client.app_id]["labels"] == {"team": "search"}


@pytest.mark.parametrize(
    "labels", [{"1abc": "x"}, {"a-b": "x"}, {"team": 3}, "team=search"]
)
def test_it_refuses_labels_the_dashboard_would_refuse_at_once(labels):
    with pytest.raises((TypeError, ValueError), match="label"):
        DashboardClient("Test App", auto_register=False, labels=labels)


@pytest.mark.live
def test_it_serves_the_dashboard_in_process(tmp_path):
    port = free_port()
    script = (
        "from sollol import UnifiedDashboard; "
        f"UnifiedDashboard(dashboard_port={port}).run()"
    )
    env = {
        **os.environ,
        "SOLLOL_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            assert process.poll() is None, "the dashboard exited"
            try:
                url = f"http://127.0.0.1:{port}/api/applications"
                return requests.get(url, timeout=0.5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=20)
    finally:
        process.terminate()
        process.wait(10)


def test_it_explains_that_the_dashboard_server_is_missing(tmp_path):
    # Only the client library, as an application that installed it would have.
    shutil.copytree(REPO / "sollol", tmp_path / "sollol")
    script = (
        "from sollol import UnifiedDashboard\n"
        "try:\n"
        "    UnifiedDashboard().run()\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-E", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "sollol_site" in result.stdout, result.stderr


def test_it_reports_requests_that_the_metrics_then_show(live_dashboard, make_client):
    client = make_client(live_dashboard.url, app_id="router-7")
    for latency in (100.0, 200.0, 300.0):
        client.record_request(
            node="127.0.0.2:11434",
            model="llama3.2:3b",
            latency_ms=latency,
            completion_tokens=30,
        )
    client.record_request(
        node="127.0.0.2:11434", model="llama3.2:3b", latency_ms=50.0, ok=False
    )
    assert client.flush(5)

    def reported():
        body = requests.get(live_dashboard.url + "/api/metrics", timeout=2).json()
        return body if body["totals"]["requests"] == 4 else None

    body = wait_for(reported)
    assert body["totals"]["success_rate"] == 0.75
    assert body["totals"]["latency_ms"]["p50"] == 150.0
    assert body["totals"]["tokens_per_second"] == 150.0  # 90 tokens in 0.6 s
    [app] = body["per_application"]
    assert app["app_id"] == "router-7"


def test_its_log_handler_ships_lines_live_without_recursing(
    live_dashboard, make_client
):
    from websockets.sync.client import connect

    client = make_client(live_dashboard.url, app_id="logger-1")
    app_log = logging.getLogger("test.app")
    ws_url = live_dashboard.url.replace("http", "ws") + "/ws/logs?app_id=logger-1"
    with connect(ws_url, open_timeout=5) as viewer:
        handler = client.install_log_handler(level=logging.DEBUG)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.DEBUG)  # urllib3's own debug lines must not be sent
        try:
            app_log.info("serving %d requests", 3)
            app_log.warning("node <b>127.0.0.2</b> slow")
            assert client.flush(5)
        finally:
            root.setLevel(level)
        lines = [json.loads(viewer.recv(timeout=5)) for _ in range(2)]
        assert [line["message"] for line in lines] == [
            "serving 3 requests",
            "node <b>127.0.0.2</b> slow",
        ]
        assert [line["level"] for line in lines] == ["INFO", "WARNING"]
        assert {line["logger"] for line in lines} == {"test.app"}
        with pytest.raises(TimeoutError):
            viewer.recv(timeout=0.5)  # nothing from urllib3 or the sender itself
    assert handler.dropped == 0
    client.close()
    assert handler not in logging.getLogger().handlers


def test_its_senders_drop_and_count_rather_than_block(thread_errors):
    from sollol.batching import BatchSender

    sender = BatchSender(
        f"http://127.0.0.1:{free_port()}/api/logs",
        headers={},
        encode=lambda items: items,
        name="test",
        max_queue=10,
        interval=0.05,
    )
    started = time.monotonic()
    for i in range(50):
        sender.put({"message": f"m{i}"})
    assert time.monotonic() - started < 0.5
    time.sleep(0.3)  # it tried, failed, and keeps the newest 10 for a retry
    stats = sender.stats
    assert stats["dropped"] == 40 and stats["queued"] == 10 and stats["sent"] == 0
    sender.close(1)
    assert not thread_errors


def test_its_traces_reach_the_dashboard_as_one_tree(live_dashboard, make_client):
    client = make_client(live_dashboard.url, app_name="Tracing App")
    with client.trace("generate", model="llama3.2:3b") as outer:
        with client.trace("pick-node", node="127.0.0.2:11434"):
            pass
    assert client.flush(5)

    def stored():
        response = requests.get(
            f"{live_dashboard.url}/api/traces/{outer.trace_id}", timeout=2
        )
        return response.json() if response.status_code == 200 else None

    tree = wait_for(stored)
    text = json.dumps(tree)
    assert "generate" in text and "pick-node" in text
    assert "Tracing App" in text  # the app's name is the service

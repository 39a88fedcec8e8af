"""The dashboard as its users run it: a real server process, driven over HTTP and WS."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.liveserver import wait_for

pytestmark = pytest.mark.live


def register(server, app_id: str, **fields) -> requests.Response:
    body = {
        "app_id": app_id,
        "name": fields.pop("name", f"App {app_id}"),
        "router_type": "HybridRouter",
        "version": "1.0.0",
        "metadata": {"env": "test"},
        **fields,
    }
    return requests.post(
        f"{server.url}/api/applications/register", json=body, timeout=5
    )


def stream(server, since: int | None = None):
    query = f"?since={since}" if since is not None else ""
    return connect(
        f"ws://127.0.0.1:{server.port}/ws/applications{query}", open_timeout=5
    )


def next_event(ws, timeout: float = 10.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def listed(server) -> dict[str, dict]:
    page = requests.get(f"{server.url}/api/applications?limit=1000", timeout=5).json()
    return {app["app_id"]: app for app in page["applications"]}


def test_it_serves_and_stops_cleanly_on_sigterm(live_server_factory):
    server = live_server_factory()
    server.start()
    assert register(server, "a1").status_code == 200
    assert requests.get(server.url + "/", timeout=5).status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in server.log()
    assert "Traceback" not in server.log()


def test_it_stops_cleanly_on_ctrl_c(live_server_factory):
    server = live_server_factory()
    server.start()
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.log()


def test_it_marks_apps_stale_and_removes_them_within_a_second_of_the_deadlines(
    live_server_factory,
):
    server = live_server_factory(
        SOLLOL_APP_STALE_AFTER="2", SOLLOL_APP_REMOVE_AFTER="4"
    )
    server.start()
    with stream(server) as ws:
        last_heartbeat = time.monotonic()  # no later than the server's own clock
        assert register(server, "quiet").status_code == 200
        assert next_event(ws)["type"] == "app_registered"
        stale = next_event(ws)
        stale_at = time.monotonic() - last_heartbeat
        removed = next_event(ws)
        removed_at = time.monotonic() - last_heartbeat
    assert stale["type"] == "app_stale" and stale["app_id"] == "quiet"
    assert "not responding" in stale["message"]
    assert removed["type"] == "app_removed"
    # The sweep runs every second: each event is due at its deadline, never before,
    # and at most a sweep interval (plus scheduling noise) after it.
    assert 2.0 <= stale_at < 3.5, stale_at
    assert 4.0 <= removed_at < 5.5, removed_at
    assert "quiet" not in listed(server)


def test_it_keeps_apps_through_its_own_outage(live_server_factory):
    server = live_server_factory(
        SOLLOL_APP_STALE_AFTER="2", SOLLOL_APP_REMOVE_AFTER="4"
    )
    server.start()
    assert register(server, "survivor").status_code == 200
    server.stop()
    time.sleep(5)  # longer than the removal timeout, with no sweep running
    restarted = time.monotonic()
    server.start()
    with stream(server) as ws:
        app = listed(server)["survivor"]
        assert app["status"] == "active"
        # A full stale timeout after the restart, and only then, it goes stale.
        event = next_event(ws)
        assert event["type"] == "app_stale"
        assert time.monotonic() - restarted >= 2.0


def test_it_replays_missed_events_after_a_restart(live_server_factory):
    server = live_server_factory()
    server.start()
    register(server, "first")
    with stream(server, since=0) as ws:
        seen = next_event(ws)
    server.stop()
    server.start()
    register(server, "second")
    requests.post(f"{server.url}/api/applications/first/unregister", timeout=5)
    with stream(server, since=seen["id"]) as ws:
        missed = [next_event(ws), next_event(ws)]
    assert [(e["type"], e["app_id"]) for e in missed] == [
        ("app_registered", "second"),
        ("app_unregistered", "first"),
    ]


def test_it_answers_concurrent_registrations_and_listings_without_errors(
    live_dashboard,
):
    statuses: list[int] = []
    lock = threading.Lock()
    app_ids = [f"c-{uuid.uuid4().hex[:8]}-{i}" for i in range(16)]

    def client(app_id: str) -> None:
        session = requests.Session()
        mine = []
        for round in range(15):
            mine.append(
                register(live_dashboard, app_id, name=f"{app_id} {round}").status_code
            )
            beat = session.post(
                f"{live_dashboard.url}/api/applications/heartbeat",
                json={"app_id": app_id, "metadata": {"round": round}},
                timeout=10,
            )
            mine.append(beat.status_code)
            page = session.get(f"{live_dashboard.url}/api/applications", timeout=10)
            mine.append(page.status_code)
        with lock:
            statuses.extend(mine)

    threads = [threading.Thread(target=client, args=(a,)) for a in app_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 16 * 15 * 3
    assert set(statuses) == {200}
    apps = listed(live_dashboard)
    assert all(apps[a]["metadata"]["round"] == 14 for a in app_ids)


def test_it_works_on_daphne_too(live_server_factory):
    server = live_server_factory("daphne")
    server.start()
    with stream(server) as ws:
        assert register(server, "on-daphne").status_code == 200
        beat = requests.post(
            f"{server.url}/api/applications/heartbeat",
            json={"app_id": "on-daphne", "metadata": {"x": 1}},
            timeout=5,
        )
        assert beat.status_code == 200
        assert next_event(ws)["type"] == "app_registered"
        assert next_event(ws)["type"] == "app_updated"


@pytest.mark.parametrize("kind", ["serve", "daphne"])
def test_it_reads_chunked_request_bodies_on_every_lane(live_server_factory, kind):
    """A client that streams its body (no Content-Length) is read, not seen empty."""
    server = live_server_factory(kind)
    server.start()
    body = json.dumps({"app_id": "chunky", "name": "Chunked App"}).encode()

    def chunks():  # a generator body: requests sends Transfer-Encoding: chunked
        yield body[:10]
        yield body[10:]

    for path in ("/api/applications/register", "/api/applications/heartbeat"):
        response = requests.post(
            server.url + path,
            data=chunks(),
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert response.status_code == 200, response.text
        assert response.json()["app_id"] == "chunky"


def test_after_a_restart_apps_are_back_within_a_heartbeat_and_nodes_keep_history(
    live_server_factory,
):
    from simulator.ollama import running_fleet
    from sollol import DashboardClient

    with running_fleet(1, base="127.0.0.2", port=0, seed=41) as fleet:
        server = live_server_factory(
            SOLLOL_OLLAMA_NODES=fleet.urls[0],
            SOLLOL_DISCOVER_LOCALHOST="false",
            SOLLOL_PROBE_INTERVAL="1",
            SOLLOL_PROBE_TIMEOUT="1",
            SOLLOL_APP_STALE_AFTER="4",
            SOLLOL_APP_REMOVE_AFTER="8",
        )
        server.start()
        client = DashboardClient(
            app_name="Restarted", dashboard_url=server.url, heartbeat_interval=1.0
        )
        try:
            assert client.wait_registered(10)

            def history() -> list[dict]:
                nodes = requests.get(server.url + "/api/network/nodes", timeout=5)
                [node] = nodes.json()["nodes"]
                detail = requests.get(
                    f"{server.url}/api/network/nodes/{node['id']}", timeout=5
                )
                return detail.json()["history"]

            fleet.nodes[0].die()
            wait_for(lambda: len(history()) >= 2)
            fleet.nodes[0].revive()
            wait_for(lambda: len(history()) >= 3)
            before = history()
            server.stop()
            time.sleep(3)
            server.start()
            restarted = time.time()
            # Heard from again within one heartbeat interval (and a little).
            wait_for(
                lambda: listed(server)[client.app_id]["last_heartbeat"] >= restarted,
                timeout=2.5,
            )
            assert history()[-len(before) :] == before  # nothing forgotten
            time.sleep(5)  # past the stale timeout: no false app_stale
            with stream(server, since=0) as ws:
                types = []
                try:
                    while True:
                        types.append(next_event(ws, timeout=1)["type"])
                except TimeoutError:
                    pass
            assert "app_stale" not in types
        finally:
            client.close()


@pytest.mark.parametrize("kind", ["serve", "daphne"])
def test_refused_and_unknown_streams_get_their_close_code_from_a_real_server(
    live_server_factory, kind
):
    """A close before the accept would be an HTTP 403 handshake: no code, no reason."""
    server = live_server_factory(kind, SOLLOL_READ_TOKEN="read-me")
    server.start()
    base = f"ws://127.0.0.1:{server.port}"
    reader = {"Authorization": "Bearer read-me"}
    for path, headers, code in (
        ("/ws/applications", {}, 4401),
        ("/ws/no-such-stream", {}, 4401),  # which streams exist is not said either
        ("/ws/no-such-stream", reader, 4404),
    ):
        with connect(base + path, open_timeout=5, additional_headers=headers) as ws:
            said = json.loads(ws.recv(timeout=5))
            assert said["type"] == "error" and said["message"]
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == code, (path, ws.close_code)
    allowed = f"{base}/ws/applications?since=0"
    with connect(allowed, open_timeout=5, additional_headers=reader) as ws:
        assert register(server, "reader").status_code == 200
        assert next_event(ws)["type"] == "app_registered"


def test_an_access_log_in_json_lines_for_log_shippers(live_server_factory):
    server = live_server_factory(SOLLOL_ACCESS_LOG="true", SOLLOL_LOG_FORMAT="json")
    server.start()
    assert requests.get(f"{server.url}/api/network/health", timeout=5).ok
    missing = requests.get(f"{server.url}/api/nothing-here?x=<b>", timeout=5)
    assert missing.status_code == 404

    def logged() -> list[dict]:
        # Every log line is one JSON object; only serve's banner (its standard
        # output, not the log) is text.
        lines = [
            json.loads(line)
            for line in server.log().splitlines()
            if line and not line.startswith("SOLLOL dashboard on ")
        ]
        return [line for line in lines if line["logger"] == "uvicorn.access"]

    def both() -> list[dict] | None:
        paths = {line["path"]: line for line in logged()}
        wanted = ("/api/network/health", "/api/nothing-here?x=%3Cb%3E")
        return [paths[path] for path in wanted] if set(wanted) <= set(paths) else None

    health, nothing = wait_for(both, what="both requests in the access log")
    assert (health["method"], health["status"]) == ("GET", 200)
    assert health["client"].startswith("127.0.0.1:") and health["level"] == "INFO"
    assert nothing["status"] == 404

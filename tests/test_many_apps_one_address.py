"""Many well-behaved applications behind one address (a NAT, a Kubernetes node, a
host of agents) are served, not refused: 1,000 apps heartbeating every second from
127.0.0.1 for 30 s get only 2xx answers with the default limits, and none goes
stale. (Before the limits followed the app, 90 % of such heartbeats got 429.)"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.live

APPS = 1000
SECONDS = 30
THREADS = 20  # each with one kept-alive connection, 50 apps


def test_a_thousand_apps_behind_one_address_heartbeat_without_429(
    live_server_factory,
):
    # Stale after 20 s here (registering them all first takes some seconds): a
    # heartbeat refused or held up that long would show as app_stale.
    server = live_server_factory(
        SOLLOL_APP_STALE_AFTER="20",
        SOLLOL_APP_REMOVE_AFTER="60",
        SOLLOL_DISCOVER_LOCALHOST="false",
    )
    server.start()
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def count(status: int) -> None:
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    def apps_of(worker: int) -> list[str]:
        return [f"agent-{worker}-{i}" for i in range(APPS // THREADS)]

    def post(conn: http.client.HTTPConnection, path: str, app_id: str) -> None:
        body = json.dumps({"app_id": app_id, "name": app_id})
        for attempt in (1, 2):
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                # The server let an idle kept-alive connection go (as any client
                # library does, connect again once; a second failure is a failure).
                conn.close()
                if attempt == 2:
                    raise
        response.read()
        count(response.status)

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for app_id in apps_of(index):
            post(conn, "/api/applications/register", app_id)
        begin = time.monotonic()
        for second in range(SECONDS):
            # Each second, every app once; then wait for the next second.
            for app_id in apps_of(index):
                post(conn, "/api/applications/heartbeat", app_id)
            pause = begin + second + 1 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        conn.close()

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 120)
    assert not any(thread.is_alive() for thread in threads)

    assert statuses == {200: APPS + APPS * SECONDS}, statuses
    stale = requests.get(
        f"{server.url}/api/events?type=app_stale&limit=5", timeout=10
    ).json()
    assert stale["total"] == 0, stale["events"]
    listed = requests.get(
        f"{server.url}/api/applications?status=active&limit=0", timeout=10
    ).json()
    assert listed["total"] == APPS

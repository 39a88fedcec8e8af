from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import require
from tests.liveserver import LiveServer, free_port
from tests.production import PG_ADMIN, REDIS, reachable

BROWSER_TESTS = Path(__file__).resolve().parent / "browser"


def pytest_ignore_collect(collection_path, config):
    """Collect tests/browser only when asked for by path (`make test` runs it alone).

    Playwright's sync API runs an event loop of its own, which must not share a
    process with the asyncio tests.
    """
    if collection_path != BROWSER_TESTS:
        return None
    for arg in config.args:
        asked = Path(arg.split("::")[0]).resolve()
        if asked == BROWSER_TESTS or BROWSER_TESTS in asked.parents:
            return None
    return True


@pytest.fixture
def live_server_factory(tmp_path):
    """Make LiveServer instances (not started); stop them and drop their data after."""
    servers: list[LiveServer] = []

    def make(kind: str = "serve", database=None, **env: str) -> LiveServer:
        server = LiveServer(tmp_path / f"server{len(servers)}", kind, database, **env)
        server.tmp_path.mkdir(parents=True, exist_ok=True)
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):  # a server sharing a database stops first
        server.close()


@pytest.fixture
def live_dashboard(live_server_factory):
    """A started dashboard server process with default settings."""
    server = live_server_factory()
    server.start()
    return server


# A real Prometheus Alertmanager (Debian's prometheus-alertmanager), started on
# 127.0.0.1 with its own configuration and data dir, clustering off (no gossip
# port), stopped by its PID.
ALERTMANAGER = Path(
    os.environ.get("SOLLOL_ALERTMANAGER", "/usr/bin/prometheus-alertmanager")
)
CONFIG = """
route:
  receiver: nobody
  group_wait: 1s
receivers:
  - name: nobody
"""


@pytest.fixture
def alertmanager(tmp_path):
    """The URL of an Alertmanager of the test's own."""
    require(
        ALERTMANAGER.is_file() and os.access(ALERTMANAGER, os.X_OK),
        f"{ALERTMANAGER} is missing: apt-get install prometheus-alertmanager (Debian)",
    )
    (tmp_path / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            str(ALERTMANAGER),
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no cluster, no gossip
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail((tmp_path / "alertmanager.log").read_text()[-2000:])
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(15)


@pytest.fixture
def database():
    """A PostgreSQL database of the test's own (Redis must be there too);
    dropped after."""
    require(reachable("127.0.0.1", 5432), "no PostgreSQL on 127.0.0.1:5432")
    require(reachable(*REDIS), "no Redis on 127.0.0.1:6379")
    import psycopg

    name = f"sollol_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

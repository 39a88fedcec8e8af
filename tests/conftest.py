from __future__ import annotations

from pathlib import Path

import pytest

from tests.liveserver import LiveServer

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

from __future__ import annotations

import pytest

from tests.liveserver import LiveServer


@pytest.fixture
def live_server_factory(tmp_path):
    """Make LiveServer instances (not started); stop them and drop their data after."""
    servers: list[LiveServer] = []

    def make(kind: str = "serve", **env: str) -> LiveServer:
        server = LiveServer(tmp_path / f"server{len(servers)}", kind, **env)
        server.tmp_path.mkdir(parents=True, exist_ok=True)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def live_dashboard(live_server_factory):
    """A started dashboard server process with default settings."""
    server = live_server_factory()
    server.start()
    return server

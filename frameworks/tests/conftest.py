"""The fake dashboards a test starts, closed when it ends (frameworks.tests.fakes)."""

from __future__ import annotations

import pytest


@pytest.fixture
def servers():
    """Track a server a test starts: servers(FakeDashboard.ray()); all are closed
    when the test ends."""
    started = []

    def track(server):
        started.append(server)
        return server

    yield track
    for server in started:
        server.close()

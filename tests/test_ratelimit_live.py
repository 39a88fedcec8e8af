"""Rate limits hold across server processes when they share Redis.

Two daphne processes on one PostgreSQL database and one Redis, as production runs
them behind nginx; one application heartbeats as fast as it can, its requests
spread over both. With shared limits it gets what one process would give it;
with each process keeping its own buckets (the control), twice that.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.production import REDIS

pytestmark = pytest.mark.live

# A burst small beside the rate over the run: each process may let its own burst
# through before it hears from Redis, however fast the machine sends.
RATE, BURST, SECONDS = 20, 10, 3.0


def hammer(urls: list[str], app_id: str) -> dict[int, int]:
    """Heartbeats for SECONDS, alternating between the servers; answers by status."""
    sessions = [requests.Session() for _ in urls]
    answers: dict[int, int] = {}
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        for session, url in zip(sessions, urls, strict=True):
            status = session.post(
                url + "/api/applications/heartbeat",
                json={"app_id": app_id, "name": "Looper"},
                timeout=5,
            ).status_code
            answers[status] = answers.get(status, 0) + 1
    return answers


@pytest.mark.parametrize("limits", ["redis", "memory"])
def test_one_app_gets_its_rate_however_many_processes_serve_it(
    database, live_server_factory, limits
):
    env = {
        "DATABASE_URL": database,
        "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
        "SOLLOL_CHANNEL_PREFIX": f"limits{uuid.uuid4().hex[:8]}",
        "SOLLOL_RATE_LIMITS": limits,
        "SOLLOL_APP_WRITE_RATE": str(RATE),
        "SOLLOL_APP_WRITE_BURST": str(BURST),
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        "SOLLOL_CAPTURE_LOGS": "false",
    }
    first = live_server_factory("daphne", **env)
    first.start(timeout=60)  # migrates the shared database first
    second = live_server_factory("daphne", **env)
    second.start(timeout=60)
    answers = hammer([first.url, second.url], f"looper-{limits}")
    sent = sum(answers.values())
    assert set(answers) == {200, 429}, answers
    one_process = BURST + RATE * SECONDS  # what one process's bucket lets through
    assert sent > 4 * one_process, answers  # it really looped
    if limits == "redis":
        # Above it, what both processes let through before they heard of each
        # other: at most the second's burst, and a report's lag (core.ratelimit).
        assert answers[200] <= one_process * 1.4, answers
    else:
        assert answers[200] >= one_process * 1.8, answers

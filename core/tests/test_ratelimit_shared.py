"""Rate limits shared by every server process through Redis (core.ratelimit).

Two SharedLimits stand for two processes; each tells the machine's Redis what it
let through, and learns when all of them together took more than one bucket holds.
"""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from conftest import require
from core.ratelimit import SharedLimits
from tests.liveserver import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
CONFIG = (10.0, 20.0)  # 10 a second, bursts of 20


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def processes():
    require(redis_up(), "no Redis on 127.0.0.1:6379")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return SharedLimits(REDIS_URL, prefix), SharedLimits(REDIS_URL, prefix)


def test_two_processes_share_one_bucket_a_key(processes):
    first, second = processes
    for _ in range(15):
        first.note("app", CONFIG, "looping-app")
        second.note("app", CONFIG, "looping-app")
    second.note("app", CONFIG, "quiet-app")
    assert first.flush() == 1  # 15 of the 20: within the burst
    assert first.held("app", "looping-app") == 0
    assert second.flush() == 2  # 30 in all: 10 over, a second's refill
    assert 0.8 < second.held("app", "looping-app") <= 1.0
    assert second.held("app", "quiet-app") == 0  # its neighbour is not held
    # The first process learns it at its next report.
    first.note("app", CONFIG, "looping-app")
    first.flush()
    assert first.held("app", "looping-app") > 0.8


def test_a_process_alone_within_its_limits_is_never_held(processes):
    alone, _ = processes
    for _ in range(20):
        alone.note("app", CONFIG, "steady")
    alone.flush()
    assert alone.held("app", "steady") == 0


def test_without_redis_each_process_limits_on_its_own_and_says_so_once(caplog):
    away = SharedLimits(f"redis://127.0.0.1:{free_port()}/0", "away")
    with caplog.at_level(logging.WARNING, logger="core.ratelimit"):
        for _ in range(3):
            away.note("app", CONFIG, "x")
            assert away.flush() == 0
    assert away.held("app", "x") == 0
    said = [r for r in caplog.records if "shared rate limits" in r.getMessage()]
    assert len(said) == 1

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
from core import ratelimit
from core.ratelimit import RateLimiter, SharedLimits
from tests.liveserver import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
CONFIG = (10.0, 20.0)  # 10 a second, bursts of 20


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


class Process:
    """One server process: its own buckets, and its reports to the shared ones."""

    def __init__(self, prefix: str, url: str = REDIS_URL) -> None:
        self.limiter = RateLimiter(*CONFIG)
        self.shared = SharedLimits(url, prefix, local=lambda kind, config: self.limiter)

    def let_through(self, key: str, n: int) -> int:
        """Offer n requests for key; report those let through; count them."""
        let = 0
        for _ in range(n):
            if not self.limiter.wait(key):
                self.shared.note("app", CONFIG, key)
                let += 1
        return let

    def refused_for(self, key: str) -> float:
        """Seconds key must wait here now (0: its next request goes through)."""
        probe = RateLimiter(*CONFIG, clock=self.limiter.clock)
        probe._buckets = dict(self.limiter._buckets)
        return probe.wait(key)


@pytest.fixture
def processes():
    require(redis_up(), "no Redis on 127.0.0.1:6379")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return Process(prefix), Process(prefix)


def test_two_processes_share_one_bucket_a_key(processes):
    first, second = processes
    assert first.let_through("looping-app", 15) == 15
    assert second.let_through("looping-app", 15) == 15  # each within its own burst
    assert second.let_through("quiet-app", 1) == 1
    assert first.shared.flush() == 1  # 15 of the 20: within the burst
    assert first.refused_for("looping-app") == 0
    assert second.shared.flush() == 2  # 30 in all: 10 over, a second's refill
    assert 1.0 < second.refused_for("looping-app") <= 1.1
    assert second.refused_for("quiet-app") == 0  # its neighbour is not held
    # The first process learns it at its next report.
    assert first.let_through("looping-app", 1) == 1
    first.shared.flush()
    assert first.refused_for("looping-app") > 1.0


def test_a_held_key_gets_the_rate_afterwards_not_a_second_burst(processes):
    first, second = processes
    clock = [0.0]
    for process in processes:
        process.limiter.clock = lambda: clock[0]
    assert first.let_through("looping-app", 20) == 20
    assert second.let_through("looping-app", 20) == 20
    first.shared.flush()
    second.shared.flush()  # 40 of 20 taken: the second owes 20
    clock[0] = 0.1  # the first refilled one, lets it through, and hears of it
    assert first.let_through("looping-app", 20) == 1
    first.shared.flush()
    assert 2.1 < first.refused_for("looping-app") <= 2.2  # 21 owed, then one
    # Once what they owe has refilled, they get the rate's refill since (the
    # second owes only 20), not a second burst of 20 each.
    clock[0] = 0.1 + 2.21
    assert first.let_through("looping-app", 20) == 1
    assert second.let_through("looping-app", 20) == 3


def test_a_process_alone_within_its_limits_is_never_held(processes):
    alone, _ = processes
    assert alone.let_through("steady", 15) == 15
    alone.shared.flush()
    assert alone.refused_for("steady") == 0
    assert alone.let_through("steady", 5) == 5  # the rest of its burst


def test_without_redis_each_process_limits_on_its_own_and_says_so_once(caplog):
    away = Process("away", url=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="core.ratelimit"):
        for _ in range(3):
            assert away.let_through("x", 5) == 5
            assert away.shared.flush() == 0
    assert away.let_through("x", 10) == 5  # its own burst, and no more
    said = [r for r in caplog.records if "shared rate limits" in r.getMessage()]
    assert len(said) == 1


def test_apps_new_to_this_process_are_not_refused_for_what_others_charged(
    settings, monkeypatch
):
    """The new-app limit stays in each process: behind a load balancer every
    process meets each app of a fleet once, and one shared bucket would charge
    the fleet once per process."""
    require(redis_up(), "no Redis on 127.0.0.1:6379")
    settings.SOLLOL_RATE_LIMITS = "redis"
    settings.SOLLOL_NEW_APP_RATE, settings.SOLLOL_NEW_APP_BURST = 10.0, 100.0
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    here = SharedLimits(REDIS_URL, prefix)
    monkeypatch.setattr(ratelimit, "_shared_limits", here)
    ratelimit.forget_buckets()
    # Other processes met 300 of this address's apps: 200 more than one bucket.
    others = Process(here.prefix)
    for _ in range(300):
        others.shared.note("new_app", (10.0, 100.0), "127.0.0.9")
    others.shared.flush()

    # This process meets 50 of them, reports, and meets 50 more.
    def meet(apps: range) -> list:
        return [ratelimit.app_refusal(f"agent-{i}", "127.0.0.9") for i in apps]

    refused = meet(range(50))
    here.flush()
    refused += meet(range(50, 100))
    assert refused == [None] * 100

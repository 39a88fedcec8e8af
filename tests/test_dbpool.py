"""The PostgreSQL pool's reconnect delay has a ceiling (core/dbpool.py)."""

from __future__ import annotations

import pytest

from core import dbpool

pool_base = pytest.importorskip("psycopg_pool.base")


def delays(attempts: int) -> list[float]:
    attempt = pool_base.AttemptWithBackoff(timeout=300)
    seen = []
    for second in range(attempts):
        attempt.update_delay(float(second))
        seen.append(attempt.delay)
    return seen


@pytest.fixture
def restore_cap():
    saved = dbpool._cap
    yield
    if saved is not None:
        dbpool.cap_reconnect_delay(saved if saved != float("inf") else 0)


def test_attempts_come_at_most_a_ceiling_apart(restore_cap):
    dbpool.cap_reconnect_delay(1.0)
    assert max(delays(8)) <= 1.0


def test_zero_leaves_psycopgs_own_backoff(restore_cap):
    dbpool.cap_reconnect_delay(0)
    # 1, 2, 4 … 128 s: after a long outage the next attempt comes long after.
    assert delays(8)[-1] > 100

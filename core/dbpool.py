"""The PostgreSQL pool is back soon after the database, however long it was away.

psycopg_pool retries a lost connection with exponential backoff and no ceiling
(1, 2, 4, 8, 16, 32 … s, until `reconnect_timeout`): after a 30 s outage its next
attempt could come 30 s after the database returned, and every request got 503
meanwhile. The pool has no option for a ceiling, so its attempt's delay is capped
here. One connection attempt per missing connection every `max_delay` seconds is
cheap for a database that is down, and `bench/faults.py --outage 30` measures the
difference (bench/RESULTS.md).
"""

from __future__ import annotations

_cap: float | None = None


def cap_reconnect_delay(max_delay: float) -> None:
    """Make psycopg_pool wait at most max_delay seconds between reconnect attempts.

    0 or less leaves psycopg's own backoff (bench/faults.py compares the two).
    """
    global _cap
    try:
        from psycopg_pool.base import AttemptWithBackoff
    except ImportError:  # no pool installed: nothing to cap
        return
    first = _cap is None
    _cap = max(0.1, max_delay) if max_delay > 0 else float("inf")
    if not first:
        return
    uncapped = AttemptWithBackoff.update_delay

    def update_delay(self, now: float) -> None:
        uncapped(self, now)
        self.delay = min(self.delay, _cap)

    AttemptWithBackoff.update_delay = update_delay

"""Writes are rate limited by token buckets: per client address, and per app.

One client (an app in a loop, a misconfigured router) must not be able to fill the
database or starve the others. Limits follow the unit of abuse: an application's
registrations and heartbeats are limited per app_id (one app in a loop is slowed,
its neighbours behind the same address are not), and every write per address with
a limit high enough for thousands of apps behind one NAT (a flood guard). Each
server process keeps its own buckets, so behind N processes a client gets up to N
times the rate; the limit is a guard against
runaways, not an accounting tool. Behind a reverse proxy, the client's address is
the one the proxy passes in X-Forwarded-For, believed only from the proxies named
in SOLLOL_TRUSTED_PROXIES (core.proxies), whichever server runs the app.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from django.conf import settings

MAX_CLIENTS = 100_000  # buckets kept; the least recently seen are forgotten first


class RateLimiter:
    """Allow `rate` requests a second per key, with bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()  # Django's sync views run in threads

    def wait(self, key: str) -> float:
        """Take one request for key; return 0, or the seconds to wait before one."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                waited = 0.0
            else:
                self._buckets[key] = (tokens, now)
                waited = (1 - tokens) / self.rate
            while len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return waited


_limiters: dict[str, tuple[tuple[float, float], RateLimiter]] = {}


def _wait(kind: str, config: tuple[float, float], client: str) -> float:
    if config[0] <= 0:
        return 0.0
    known = _limiters.get(kind)
    if known is None or known[0] != config:
        known = _limiters[kind] = (config, RateLimiter(*config))
    return known[1].wait(client)


def forget_buckets() -> None:
    """Start every limit afresh (a test's beginning)."""
    _limiters.clear()


def write_wait(client: str) -> float:
    """Return 0 when this client may write now, else the seconds until it may."""
    return _wait(
        "write", (settings.SOLLOL_WRITE_RATE, settings.SOLLOL_WRITE_BURST), client
    )


def app_wait(app_id: str) -> float:
    """The same per application, for its registrations and heartbeats."""
    return _wait(
        "app", (settings.SOLLOL_APP_WRITE_RATE, settings.SOLLOL_APP_WRITE_BURST), app_id
    )


def app_refusal(app_id: str, wait: float) -> str:
    return f"too many writes for application {app_id[:64]}; try again in {wait:.1f} s"


def login_wait(client: str) -> float:
    """The same for attempts to log in, which guard reads when a token is set."""
    return _wait(
        "login", (settings.SOLLOL_LOGIN_RATE, settings.SOLLOL_LOGIN_BURST), client
    )


def retry_after(seconds: float) -> str:
    """Return a Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))

"""Writes are rate limited by token buckets: per client address, and per app.

One client (an app in a loop, a misconfigured router) must not be able to fill the
database or starve the others. Limits follow the unit of abuse: an application's
registrations and heartbeats are limited per app_id (one app in a loop is slowed,
its neighbours behind the same address are not), and every write per address with
a limit high enough for thousands of apps behind one NAT (a flood guard). Each
server process keeps its own buckets, so behind N processes a client gets up to N
times the rate, unless the limits are shared (below). The limit is a guard
against runaways, not an accounting tool. Behind a reverse proxy, the client's
address is the one the proxy passes in X-Forwarded-For, believed only from the
proxies named in SOLLOL_TRUSTED_PROXIES (core.proxies), whichever server runs
the app.

Shared limits (SOLLOL_RATE_LIMITS=redis, the default with REDIS_URL): every
process still decides each request at once from its own buckets (no round trip
on the hot path), and tells Redis what it let through every FLUSH seconds; Redis
keeps one token bucket per limit and key for all processes (a Lua script, on
Redis's clock), and each report brings this process's bucket for a key down to
what the shared one has left, so a key whose shared bucket ran dry is refused in
every process until it would have refilled. So behind N processes a client gets
the rate, not N times it, give or take what the processes let through between
two reports (FLUSH): at most each one's burst at the start. Redis away:
each process goes on with its own buckets, and says so once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from django.conf import settings

logger = logging.getLogger(__name__)

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
            tokens = self._taken(key, now)
            if tokens >= 1:
                self._put(key, tokens - 1, now)
                return 0.0
            self._put(key, tokens, now)
        return (1 - tokens) / self.rate

    def cap(self, key: str, tokens: float) -> None:
        """Let key's bucket hold at most tokens from now (below zero: owed)."""
        now = self.clock()
        with self._lock:
            self._put(key, min(tokens, self._taken(key, now)), now)

    def _taken(self, key: str, now: float) -> float:
        """Take key's bucket out, refilled to now (a new one is full)."""
        tokens, then = self._buckets.pop(key, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.rate)

    def _put(self, key: str, tokens: float, now: float) -> None:
        """Put key's bucket back, as the most recently seen."""
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)

    def knows(self, key: str) -> bool:
        """Whether key has a bucket here (it wrote lately, in this process)."""
        return key in self._buckets


_limiters: dict[str, tuple[tuple[float, float], RateLimiter]] = {}


def _wait(
    kind: str, config: tuple[float, float], client: str, *, shareable: bool = True
) -> float:
    if config[0] <= 0:
        return 0.0
    known = _limiters.get(kind)
    if known is None or known[0] != config:
        known = _limiters[kind] = (config, RateLimiter(*config))
    shared = _shared() if shareable else None
    waited = known[1].wait(client)
    if not waited and shared is not None:
        shared.note(kind, config, client)
    return waited


def _local(kind: str, config: tuple[float, float]) -> RateLimiter | None:
    """This process's limiter of kind, while its settings are still config."""
    known = _limiters.get(kind)
    return known[1] if known is not None and known[0] == config else None


def forget_buckets() -> None:
    """Start every limit afresh (a test's beginning)."""
    _limiters.clear()
    if _shared_limits is not None:
        _shared_limits.forget()


FLUSH = 0.1  # seconds between this process's reports to the shared buckets

# One token bucket per limit and key for every process: take n tokens (the bucket
# may go below zero: what the processes already let through), refill by Redis's
# clock; return what is left. Forgotten once it would be full again.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or burst
local at = tonumber(held[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate) - n
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 2)
return tostring(tokens)
"""


class SharedLimits:
    """The buckets all processes share through Redis (see the module's words)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        local: Callable[[str, tuple[float, float]], RateLimiter | None] = _local,
    ) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0)
        self._take = self._redis.register_script(_TAKE)
        self.prefix = self._base = prefix
        self._forgotten = 0
        self.local = local  # (kind, config) -> this process's limiter
        self._pending: dict[tuple[str, str], list] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._failing = False
        self._thread: threading.Thread | None = None

    def note(self, kind: str, config: tuple[float, float], key: str) -> None:
        """Count one request this process let through, for the next report."""
        with self._lock:
            entry = self._pending.get((kind, key))
            if entry is None:
                self._pending[(kind, key)] = [config, 1]
            else:
                entry[1] += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shared-rate-limits", daemon=True
                )
                self._thread.start()

    def forget(self) -> None:
        with self._lock:
            self._pending.clear()
            self._forgotten += 1
            self.prefix = f"{self._base}~{self._forgotten}"  # a test's keys of its own

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Report what this process let through; bring this process's buckets
        down to what the shared ones have left. Return how many keys were
        reported."""
        with self._lock:
            pending, self._pending = self._pending, {}
            prefix = self.prefix
        if not pending:
            return 0
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (kind, key), ((rate, burst), count) in pending.items():
                self._take(
                    keys=[f"{prefix}:ratelimit:{kind}:{key}"],
                    args=[rate, max(burst, 1.0), count],
                    client=pipe,
                )
            left = pipe.execute()
        except Exception as exc:  # Redis away: each process limits on its own
            if not self._failing:
                logger.warning("shared rate limits unavailable: %s", exc)
            self._failing = True
            return 0
        if self._failing:
            logger.info("shared rate limits available again")
            self._failing = False
        for ((kind, key), (config, _)), tokens in zip(
            pending.items(), left, strict=True
        ):
            # Every process together may have taken more than the bucket holds
            # (tokens below zero): this one then refuses the key until the shared
            # bucket would have refilled, and its own bucket does not refill
            # meanwhile to let a second burst through.
            limiter = self.local(kind, config)
            if limiter is not None:
                limiter.cap(key, float(tokens))
        return len(pending)


_shared_limits: SharedLimits | None = None


def _shared() -> SharedLimits | None:
    global _shared_limits
    if settings.SOLLOL_RATE_LIMITS != "redis":
        return None
    if _shared_limits is None:
        _shared_limits = SharedLimits(settings.REDIS_URL, settings.CHANNEL_PREFIX)
    return _shared_limits


def write_wait(client: str) -> float:
    """Return 0 when this client may write now, else the seconds until it may."""
    return _wait(
        "write", (settings.SOLLOL_WRITE_RATE, settings.SOLLOL_WRITE_BURST), client
    )


def app_refusal(app_id: str, client: str) -> tuple[float, str] | None:
    """None when this application may write now; else the seconds to wait and why.

    Limited per application (its registrations and heartbeats), and, for an
    app_id this process has not seen write lately, per client address: a flood of
    invented ids from one address stops at SOLLOL_NEW_APP_RATE, while an app it
    knows is never charged there. That limit stays in each process, even with
    shared limits: what is new is new to this process, so behind a load balancer
    every process meets each app once, and N processes sharing one bucket would
    charge a fleet N times (5,000 apps on 3 processes: 15,000 of a 10,000 burst,
    and the rest refused until they go stale).
    """
    config = (settings.SOLLOL_APP_WRITE_RATE, settings.SOLLOL_APP_WRITE_BURST)
    known = _limiters.get("app")
    if (
        config[0] > 0
        and (known is None or known[0] != config or not known[1].knows(app_id))
        and (
            wait := _wait(
                "new_app",
                (settings.SOLLOL_NEW_APP_RATE, settings.SOLLOL_NEW_APP_BURST),
                client,
                shareable=False,
            )
        )
    ):
        return wait, (
            f"too many new application ids from {client} (SOLLOL_NEW_APP_RATE); "
            f"try again in {wait:.1f} s"
        )
    if wait := _wait("app", config, app_id):
        return wait, (
            f"too many writes for application {app_id[:64]}; try again in {wait:.1f} s"
        )
    return None


def report_refusal(apps: Iterable[str]) -> tuple[float, str] | None:
    """None when every application a report is for may send one now; else the
    seconds to wait and why. Charged once an application the report names (its
    lines, requests or spans); a report naming none is left to the address's
    limit."""
    config = (settings.SOLLOL_APP_REPORT_RATE, settings.SOLLOL_APP_REPORT_BURST)
    for app in sorted(set(apps)):
        if app and (wait := _wait("app_report", config, app)):
            return wait, (
                f"too many reports for application {app[:64]} "
                f"(SOLLOL_APP_REPORT_RATE); try again in {wait:.1f} s"
            )
    return None


def auth_failure_wait(client: str) -> float:
    """Charge one write without a valid token to its address; return 0 while the
    address is within SOLLOL_AUTH_FAILURE_RATE, else the seconds to wait."""
    return _wait(
        "auth_failure",
        (settings.SOLLOL_AUTH_FAILURE_RATE, settings.SOLLOL_AUTH_FAILURE_BURST),
        client,
    )


def login_wait(client: str) -> float:
    """The same for attempts to log in, which guard reads when a token is set."""
    return _wait(
        "login", (settings.SOLLOL_LOGIN_RATE, settings.SOLLOL_LOGIN_BURST), client
    )


def retry_after(seconds: float) -> str:
    """Return a Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))

"""Per-node slots and queues in Redis, shared by every gateway process of a fleet.

Two daphne gateways behind nginx are one gateway to a node: its limit
(SOLLOL_GATEWAY_NODE_CONCURRENCY) holds for all of them, and a request waits in
one line, first come first served, whichever process it reached. `SharedLimits`
has the interface of `limits.Limits`; `configured_limits` picks one of the two
(SOLLOL_GATEWAY_LIMITS), and `SharedReader` lets a process that is no gateway
(the dashboard's web process, Prometheus) read the counts.

Keys, under P = "<SOLLOL_CHANNEL_PREFIX>:gateway" (a node's keys share the hash
tag {host:port}):

    P:node:{A}:holders  sorted set: a slot token -> when its lease ends (ms, Redis
                        TIME); the requests in flight to node A
    P:node:{A}:queue    sorted set: a waiter's token -> its ticket (P:seq): the line
    P:node:{A}:waiters  sorted set: a waiter's token -> when it is given up for gone
    P:nodes             set of the addresses that have holders or waiters
    P:seq               the ticket counter
    P:wake              pub/sub channel: an address whose line may move on

Each change is one Lua script (atomic): ENTER takes a free slot when nobody
waits, else joins the line; TRY takes a slot for a waiter at the head of the
line (its rank below the free slots); FORGET gives back a slot or leaves the
line; RENEW extends the leases of the slots a process holds; SNAPSHOT counts.
Every script first drops expired leases and waiters (a process that died), and
announces on P:wake when the line may move on. Only a waiter moves itself from
the line into a slot, so a slot never goes to a waiter that is not there to
take it; waiters are told by P:wake and look again every `poll` seconds anyway.
Every key expires `3 * lease` after the last change, so abandoned state goes.

With Redis away, a request that needs a slot is refused (503, Retry-After: 1)
within SOCKET_TIMEOUT; requests already in flight finish, and the slots they
held expire with their leases (or vanish with a Redis that restarted empty).
The counts stay as last read in the gateways, and read as none in the web
process, until Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
import uuid

import redis
import redis.asyncio
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from network.gateway.limits import Limits
from network.gateway.live import Load

logger = logging.getLogger(__name__)

# How long a slot stays taken without its holder renewing it: the time a dead
# gateway's slots are lost to the fleet. Waiters renew themselves every poll.
LEASE = 10.0
WAITER_TTL = 5.0
POLL = 0.5
REFRESH = 0.25  # how often a gateway reads the counts of every node
# Redis answers on loopback in well under a millisecond: a call that takes
# seconds means it is gone, and the request is told so (503) instead of waiting.
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0

# KEYS: holders, queue, waiters, nodes, seq. ARGV: address, token, limit, lease
# ms, waiter ttl ms, key ttl ms, wake channel (the same for every node script).
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(holders, queue, waiters, now, channel, address)
  local dead = redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  local gone = redis.call('ZRANGEBYSCORE', waiters, '-inf', now)
  for _, token in ipairs(gone) do
    redis.call('ZREM', queue, token)
    redis.call('ZREM', waiters, token)
  end
  if (dead > 0 or #gone > 0) and redis.call('ZCARD', queue) > 0 then
    redis.call('PUBLISH', channel, address)
  end
end
local function touch()
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
end
"""

_NODE_PRELUDE = (
    _PRELUDE
    + """
local now = now_ms()
local token, limit = ARGV[2], tonumber(ARGV[3])
purge(KEYS[1], KEYS[2], KEYS[3], now, ARGV[7], ARGV[1])
"""
)

ENTER = (
    _NODE_PRELUDE
    + """
if redis.call('ZSCORE', KEYS[1], token) then return 1 end
if redis.call('ZSCORE', KEYS[2], token) then return 0 end
redis.call('SADD', KEYS[4], ARGV[1])
local taken = 0
if redis.call('ZCARD', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + ARGV[4], token)
  taken = 1
else
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), token)
  redis.call('ZADD', KEYS[3], now + ARGV[5], token)
end
touch()
return taken
"""
)

TRY = (
    _NODE_PRELUDE
    + """
if redis.call('ZSCORE', KEYS[1], token) then return 1 end
local rank = redis.call('ZRANK', KEYS[2], token)
if not rank then return -1 end
local free = limit - redis.call('ZCARD', KEYS[1])
if rank < free then
  redis.call('ZREM', KEYS[2], token)
  redis.call('ZREM', KEYS[3], token)
  redis.call('ZADD', KEYS[1], now + ARGV[4], token)
  if free > 1 and redis.call('ZCARD', KEYS[2]) > 0 then
    redis.call('PUBLISH', ARGV[7], ARGV[1])
  end
  touch()
  return 1
end
redis.call('ZADD', KEYS[3], now + ARGV[5], token)
touch()
return 0
"""
)

FORGET = (
    _NODE_PRELUDE
    + """
local found = redis.call('ZREM', KEYS[1], token) + redis.call('ZREM', KEYS[2], token)
redis.call('ZREM', KEYS[3], token)
local waiting = redis.call('ZCARD', KEYS[2])
if waiting > 0 and redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('PUBLISH', ARGV[7], ARGV[1])
end
if waiting == 0 and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[1])
end
touch()
return found
"""
)

# ARGV[8...]: the tokens of the slots this process holds on the node.
RENEW = (
    _NODE_PRELUDE
    + """
local kept = 0
for i = 8, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + ARGV[4], ARGV[i])
    kept = kept + 1
  end
end
touch()
return kept
"""
)

# KEYS: nodes. ARGV: the key prefix P, the wake channel. A node's keys are named
# here from its address (one Redis, not a cluster).
SNAPSHOT = (
    _PRELUDE
    + """
local now = now_ms()
local counts = {}
for _, address in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local base = ARGV[1] .. ':node:{' .. address .. '}:'
  local holders, queue = base .. 'holders', base .. 'queue'
  purge(holders, queue, base .. 'waiters', now, ARGV[2], address)
  local active, waiting = redis.call('ZCARD', holders), redis.call('ZCARD', queue)
  if active + waiting == 0 then
    redis.call('SREM', KEYS[1], address)
  else
    table.insert(counts, address)
    table.insert(counts, active)
    table.insert(counts, waiting)
  end
end
return counts
"""
)


class Unreachable(Exception):
    """Redis, where the slots are, did not answer."""


def _client_options(retry) -> dict:
    return {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        # One prompt retry (a pooled connection Redis closed), never a backoff
        # of seconds while a request waits.
        "retry": retry(NoBackoff(), 1),
    }


def _counts(flat: list) -> Load:
    return {
        str(flat[i]): (int(flat[i + 1]), int(flat[i + 2]))
        for i in range(0, len(flat), 3)
    }


class SharedLimits:
    """Slots and queues, one per node address, in Redis (see the module)."""

    def __init__(
        self,
        per_node: int,
        url: str,
        prefix: str,
        *,
        lease: float = LEASE,
        waiter_ttl: float = WAITER_TTL,
        poll: float = POLL,
        refresh: float = REFRESH,
    ) -> None:
        if per_node < 1:
            raise ValueError("a node takes at least one request at a time")
        self.per_node = per_node
        self.url = url
        self.key = f"{prefix}:gateway"
        self.lease = lease
        self.waiter_ttl = waiter_ttl
        self.poll = poll
        self.refresh = refresh
        self.renew_every = lease / 4
        # Readers of the same keys count once (live.node_load).
        self.live_key = ("redis", url, self.key)
        self._id = uuid.uuid4().hex[:12]
        self._tokens = itertools.count()
        self._cache: Load = {}
        self._held: dict[str, list[str]] = {}  # address -> this process's tokens
        self._wakers: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: redis.asyncio.Redis | None = None
        self._scripts: dict[str, redis.commands.core.AsyncScript] = {}
        self._tasks: list[asyncio.Task] = []
        self._giving_back: dict[asyncio.Task, str] = {}  # -> its node address
        self._failing = False
        self._closing = False

    # -------------------------------------------------------- the counts

    def in_flight(self, address: str) -> int:
        return self._cache.get(address, (0, 0))[0]

    def waiting(self, address: str) -> int:
        return self._cache.get(address, (0, 0))[1]

    def load(self) -> dict[str, int]:
        """Return in flight plus waiting, by node address (routing's tie-breaker)."""
        self._start()
        return {a: active + waiting for a, (active, waiting) in self._cache.items()}

    def snapshot(self) -> Load:
        """Return (in flight, waiting) by node address, every gateway's together.

        Read from Redis every `refresh` seconds, and changed at once by what this
        process does itself.
        """
        self._start()
        return dict(self._cache)

    def free(self, address: str) -> bool:
        """Return whether a request for address would start at once."""
        active, waiting = self._cache.get(address, (0, 0))
        return active < self.per_node and not waiting

    # ----------------------------------------------------------- the slots

    async def acquire(self, address: str, timeout: float) -> bool:
        """Take a slot of address, waiting at most timeout; False when none came.

        When Redis does not answer (within SOCKET_TIMEOUT), the request is refused
        at once, the gateway's 503 with Retry-After, rather than left waiting for a
        slot nobody can grant.
        """
        self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        token = f"{self._id}:{next(self._tokens)}"
        # What this process gave back a moment ago is free before it asks again.
        given = [t for t, a in self._giving_back.items() if a == address]
        if given:
            await asyncio.wait(given)
        woken = asyncio.Event()
        self._wakers.setdefault(address, set()).add(woken)
        try:
            state = await self._run("enter", address, token)
            self._adjust(address, state, 1 - state)
            while state != 1:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    await self._run("forget", address, token)
                    self._adjust(address, 0, -1)
                    return False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self.poll)):
                        await woken.wait()
                woken.clear()
                state = await self._run("try", address, token)
                if state == -1:
                    # Its place expired (this process stalled longer than
                    # waiter_ttl): in line again, at the end.
                    logger.warning("gateway: a waiter for %s lost its place", address)
                    state = await self._run("enter", address, token)
                if state == 1:
                    self._adjust(address, 1, -1)
            self._held.setdefault(address, []).append(token)
            return True
        except asyncio.CancelledError:
            self._give_back(address, token)
            raise
        except Unreachable:
            self._give_back(address, token)
            raise _refusal() from None
        finally:
            wakers = self._wakers.get(address)
            if wakers is not None:
                wakers.discard(woken)
                if not wakers:
                    del self._wakers[address]

    def release(self, address: str) -> None:
        """Give a slot back: the first in line, in whichever process, takes it."""
        tokens = self._held.get(address)
        if not tokens:
            return
        token = tokens.pop()
        if not tokens:
            del self._held[address]
        self._adjust(address, -1, 0)
        self._give_back(address, token)

    async def close(self) -> None:
        """Give back what this process holds and stop its background work."""
        self._closing = True  # for a cancellation redis-py lost (see below)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SOCKET_TIMEOUT * 2)
        self._tasks = []
        for address, tokens in list(self._held.items()):
            for token in tokens:
                self._give_back(address, token)
        self._held.clear()
        if self._giving_back:
            await asyncio.wait(list(self._giving_back), timeout=SOCKET_TIMEOUT * 2)
        if self._redis is not None:
            await self._redis.aclose()
        self._redis = None
        self._loop = None

    # ------------------------------------------------------------ Redis

    def _start(self) -> None:
        """Connect and start the background work on the running loop, once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another thread reads the counts
            return
        if self._loop is loop:
            return
        self._loop = loop
        self._closing = False
        self._redis = redis.asyncio.Redis.from_url(
            self.url, **_client_options(AsyncRetry)
        )
        self._scripts = {
            name: self._redis.register_script(text)
            for name, text in (
                ("enter", ENTER),
                ("try", TRY),
                ("forget", FORGET),
                ("renew", RENEW),
                ("snapshot", SNAPSHOT),
            )
        }
        self._tasks = [
            loop.create_task(self._follow_wakes(), name="gateway-limits-wakes"),
            loop.create_task(self._keep(), name="gateway-limits-keep"),
        ]

    def _keys(self, address: str) -> list[str]:
        node = f"{self.key}:node:{{{address}}}:"
        return [
            node + "holders",
            node + "queue",
            node + "waiters",
            f"{self.key}:nodes",
            f"{self.key}:seq",
        ]

    async def _run(self, name: str, address: str, token: str, *more: str) -> int:
        args = [
            address,
            token,
            self.per_node,
            int(self.lease * 1000),
            int(self.waiter_ttl * 1000),
            int(self.lease * 3000),
            f"{self.key}:wake",
            *more,
        ]
        try:
            result = await self._scripts[name](keys=self._keys(address), args=args)
        except (redis.RedisError, OSError) as exc:
            _raise_lost_cancellation()
            self._trouble(exc)
            raise Unreachable(str(exc)) from exc
        _raise_lost_cancellation()
        return int(result)

    async def _forget(self, address: str, token: str) -> None:
        """Give back token's slot or its place in line (whichever it has)."""
        with contextlib.suppress(Unreachable):  # its lease runs out by itself
            await self._run("forget", address, token)

    def _give_back(self, address: str, token: str) -> None:
        """Forget token in Redis as soon as may be (release() cannot wait)."""
        if self._loop is None or self._loop.is_closed():
            return  # its lease runs out by itself
        task = self._loop.create_task(self._forget(address, token))
        self._giving_back[task] = address
        task.add_done_callback(self._giving_back.pop)

    def _adjust(self, address: str, active: int, waiting: int) -> None:
        """Count what this process just did before the next read shows it."""
        had = self._cache.get(address, (0, 0))
        self._cache[address] = (max(0, had[0] + active), max(0, had[1] + waiting))

    def _trouble(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            logger.warning("gateway: Redis (the shared node slots) failed: %s", exc)

    async def _keep(self) -> None:
        """Read the counts every `refresh` s; renew held leases every lease/4."""
        renewed = time.monotonic()
        while not self._closing:
            try:
                flat = await self._scripts["snapshot"](
                    keys=[f"{self.key}:nodes"], args=[self.key, f"{self.key}:wake"]
                )
                _raise_lost_cancellation()
                self._cache = _counts(flat)
                if time.monotonic() - renewed >= self.renew_every:
                    renewed = time.monotonic()
                    await self._renew()
                if self._failing:
                    self._failing = False
                    logger.warning("gateway: Redis (the shared node slots) is back")
            except (redis.RedisError, OSError, Unreachable) as exc:
                self._trouble(exc)
            await asyncio.sleep(self.refresh)

    async def _renew(self) -> None:
        for address, tokens in list(self._held.items()):
            if not tokens:
                continue
            kept = await self._run("renew", address, "", *tokens)
            if kept < len(tokens):
                # Held past its lease without renewal (a stalled process): the
                # slot went back to the fleet while this request still runs.
                logger.warning(
                    "gateway: %d slot(s) of %s expired", len(tokens) - kept, address
                )

    async def _follow_wakes(self) -> None:
        """Wake this process's waiters of an address announced on P:wake."""
        channel = f"{self.key}:wake"
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                while not self._closing:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=1.0
                    )
                    _raise_lost_cancellation()
                    if message and message["type"] == "message":
                        for woken in self._wakers.get(message["data"], ()):
                            woken.set()
            except (redis.RedisError, OSError) as exc:
                self._trouble(exc)  # waiters poll meanwhile
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.aclose()


def _raise_lost_cancellation() -> None:
    """Raise CancelledError if the running task was cancelled and nobody raised it.

    redis-py (8.1) loses a cancellation that comes while it connects: the call
    goes on as if none came (its issues #2028, #2551). A request whose client
    left must not go on to take a slot.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _refusal() -> Exception:
    # The gateway's own answer, in the API's shape (proxy imports this module).
    from network.gateway.proxy import Refused

    return Refused(
        503,
        "the gateway cannot reach Redis, where the fleet's node slots are kept; "
        "try again shortly",
        [(b"retry-after", b"1")],
    )


class SharedReader:
    """The counts of every gateway process, read synchronously (web processes)."""

    def __init__(self, url: str, prefix: str, max_age: float = REFRESH) -> None:
        self.key = f"{prefix}:gateway"
        self.live_key = ("redis", url, self.key)
        self.max_age = max_age
        self._redis = redis.Redis.from_url(url, **_client_options(Retry))
        self._script = self._redis.register_script(SNAPSHOT)
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._counts: Load = {}
        self._failing = False

    def snapshot(self) -> Load:
        """Return (in flight, waiting) by node address; {} while Redis is away."""
        with self._lock:
            if time.monotonic() - self._read_at < self.max_age:
                return dict(self._counts)
            try:
                flat = self._script(
                    keys=[f"{self.key}:nodes"], args=[self.key, f"{self.key}:wake"]
                )
            except (redis.RedisError, OSError) as exc:
                if not self._failing:
                    self._failing = True
                    logger.warning("gateway load: Redis did not answer: %s", exc)
                self._counts = {}
            else:
                self._failing = False
                self._counts = _counts(flat)
            self._read_at = time.monotonic()
            return dict(self._counts)

    def close(self) -> None:
        self._redis.close()


def configured_limits() -> Limits | SharedLimits:
    """The slots of this deployment: in Redis when it has one, else in memory."""
    if settings.SOLLOL_GATEWAY_LIMITS == "redis":
        return SharedLimits(
            settings.SOLLOL_GATEWAY_NODE_CONCURRENCY,
            settings.REDIS_URL,
            settings.CHANNEL_PREFIX,
        )
    return Limits(settings.SOLLOL_GATEWAY_NODE_CONCURRENCY)


def configured_reader() -> SharedReader | None:
    """A reader of the shared counts, when the slots are in Redis."""
    if settings.SOLLOL_GATEWAY_LIMITS != "redis":
        return None
    return SharedReader(settings.REDIS_URL, settings.CHANNEL_PREFIX)

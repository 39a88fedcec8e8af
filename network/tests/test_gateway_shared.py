"""The gateway's slots in Redis: one node limit and one line for every gateway process.

Two SharedLimits with connections of their own stand for two gateway processes;
each test has keys of its own (a uuid prefix) on the machine's Redis, removed
after it. tests/test_gateway_live.py runs two real daphne gateways.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import requests
from django.test import override_settings

from conftest import require
from network.gateway import live
from network.gateway.proxy import Refused
from network.gateway.shared import SharedLimits, SharedReader
from network.tests.gateway_harness import served_gateway, view_of
from simulator.ollama import running_fleet
from tests.faults import MACHINE_REDIS, PrivateRedis, redis_prefix
from tests.liveserver import free_port


@pytest.fixture
def prefix():
    with redis_prefix() as name:
        yield name


@pytest.fixture
async def gateways(prefix):
    """make(**options): another gateway process's slots, closed after the test."""
    made: list[SharedLimits] = []

    def make(per_node: int = 1, **options) -> SharedLimits:
        limits = SharedLimits(per_node, MACHINE_REDIS, prefix, **options)
        made.append(limits)
        return limits

    yield make
    for limits in made:
        await limits.close()


async def crash(limits: SharedLimits) -> None:
    """Stop a process dead: no slot given back, no place in line left, no renewal."""
    limits._closing = True
    for task in limits._tasks:
        task.cancel()
    await asyncio.wait(limits._tasks, timeout=5)
    limits._tasks, limits._held = [], {}
    await limits._redis.aclose()
    limits._loop = None


async def settled(limits: SharedLimits, expected, timeout: float = 3.0):
    """Wait until limits' counts (read every refresh) are expected; return them."""
    deadline = time.monotonic() + timeout
    while limits.snapshot() != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return limits.snapshot()


async def test_a_limit_of_one_holds_across_two_gateway_processes(gateways):
    one, other = gateways(), gateways()
    assert await one.acquire("n", 1)
    assert not await other.acquire("n", 0.2)
    one.release("n")
    assert await other.acquire("n", 1)
    assert not await one.acquire("n", 0.1)


async def test_a_waiter_is_woken_when_the_slot_frees_not_at_its_next_look(gateways):
    one, other = gateways(), gateways(poll=5.0)  # it would look again in 5 s
    assert await one.acquire("n", 1)
    waiting = asyncio.create_task(other.acquire("n", 10))
    await asyncio.sleep(0.2)
    freed = time.monotonic()
    one.release("n")
    assert await waiting
    assert time.monotonic() - freed < 0.5


async def test_first_come_first_served_across_processes(gateways):
    one, other = gateways(), gateways()
    assert await one.acquire("n", 1)
    served = []

    async def request(limits, name):
        assert await limits.acquire("n", 10)
        served.append(name)

    names = ["1st", "2nd", "3rd", "4th"]
    line = []
    for limits, name in zip((other, one, other, one), names, strict=True):
        line.append(asyncio.create_task(request(limits, name)))
        await asyncio.sleep(0.05)
    # Each is served in turn, whichever process holds the slot before it.
    for turn, holder in enumerate((one, other, one, other)):
        holder.release("n")
        await asyncio.wait_for(line[turn], 3)
        assert served == names[: turn + 1]
    one.release("n")
    assert await settled(other, {}) == {}


async def test_a_wait_ends_at_its_timeout_and_leaves_the_line(gateways):
    one, other = gateways(per_node=2), gateways(per_node=2)
    assert await one.acquire("n", 1) and await other.acquire("n", 1)
    started = time.monotonic()
    assert not await other.acquire("n", 0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert await settled(one, {"n": (2, 0)}) == {"n": (2, 0)}
    one.release("n")
    assert await one.acquire("n", 0)  # nobody left waiting ahead of it


async def test_a_dead_gateways_slot_comes_back_after_its_lease(gateways):
    alive, dying, waiting = (gateways(lease=0.6) for _ in range(3))
    assert await alive.acquire("a", 1)
    assert await dying.acquire("b", 1)
    await crash(dying)
    # A dead holder renews nothing: its slot comes back within a lease (and a look).
    started = time.monotonic()
    assert await waiting.acquire("b", 5)
    assert time.monotonic() - started < 1.5
    # A live holder renews its lease: after three leases its slot is still taken.
    assert not await waiting.acquire("a", 1.8)


async def test_a_dead_gateways_place_in_line_expires(gateways):
    holder, ghost, later = gateways(), gateways(waiter_ttl=0.5), gateways()
    assert await holder.acquire("n", 1)
    ghost.load()  # connected, as a gateway is once it routes
    assert await ghost._run("enter", "n", "ghost:1") == 0  # first in line...
    await crash(ghost)  # ... and gone
    waiting = asyncio.create_task(later.acquire("n", 5))
    assert await settled(holder, {"n": (1, 2)}) == {"n": (1, 2)}
    holder.release("n")
    assert await asyncio.wait_for(waiting, 3)
    assert await settled(holder, {"n": (1, 0)}) == {"n": (1, 0)}


async def test_every_process_sees_the_counts_of_all(gateways, prefix):
    one, other = gateways(per_node=2), gateways(per_node=2)
    assert await one.acquire("n", 1) and await other.acquire("n", 1)
    queued = [
        asyncio.create_task(one.acquire("n", 5)),
        asyncio.create_task(other.acquire("n", 5)),
    ]
    assert await settled(one, {"n": (2, 2)}) == {"n": (2, 2)}
    assert await settled(other, {"n": (2, 2)}) == {"n": (2, 2)}
    reader = SharedReader(MACHINE_REDIS, prefix)
    assert await asyncio.to_thread(reader.snapshot) == {"n": (2, 2)}
    # The dashboard's reader and each gateway's own view count once, together.
    sources = (one.snapshot, other.snapshot, reader.snapshot)
    for source in sources:
        live.register(source)
    try:
        assert await asyncio.to_thread(live.node_load) == {"n": (2, 2)}
    finally:
        for source in sources:
            live.unregister(source)
    one.release("n")
    other.release("n")
    assert all(await asyncio.gather(*queued))
    assert one.free("a-node-nobody-uses") and not one.free("n")
    one.release("n")
    other.release("n")
    assert await settled(one, {}) == {}
    reader.close()


async def test_with_redis_unreachable_a_request_is_refused_at_once():
    limits = SharedLimits(1, f"redis://127.0.0.1:{free_port()}/0", "nowhere")
    started = time.monotonic()
    with pytest.raises(Refused) as refused:
        await limits.acquire("n", 30)
    assert time.monotonic() - started < 3
    assert refused.value.status == 503
    assert "cannot reach Redis" in refused.value.message
    await limits.close()
    assert SharedReader(limits.url, "nowhere").snapshot() == {}


@pytest.mark.django_db(transaction=True)
def test_redis_going_away_mid_run_is_a_clear_503_and_then_it_recovers(tmp_path):
    require(PrivateRedis.available(), "no redis-server binary (Debian: redis-server)")
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    body = {"model": "llama3.2:3b", "prompt": "x", "stream": False}
    try:
        with (
            running_fleet(1, base="127.0.0.86", port=0, seed=3) as fleet,
            override_settings(SOLLOL_GATEWAY_LIMITS="redis", REDIS_URL=private.url),
        ):
            node = fleet.nodes[0]
            node.pull("llama3.2:3b")
            with served_gateway([view_of(node)]) as served:
                url = f"{served.url}/api/generate"
                assert requests.post(url, json=body, timeout=10).status_code == 200
                node.set_delay(1.0)
                running = asyncio.run_coroutine_threadsafe(
                    _post(url, body), served.loop
                )
                time.sleep(0.3)  # it holds the node's slot
                private.stop()
                started = time.monotonic()
                refused = requests.post(url, json=body, timeout=10)
                assert time.monotonic() - started < 3
                assert refused.status_code == 503
                assert refused.headers["Retry-After"] == "1"
                assert "cannot reach Redis" in refused.json()["error"]
                assert running.result(10) == 200  # the request in flight ends well
                node.set_delay(0)
                private.start()  # empty, on the same port
                reply = requests.post(url, json=body, timeout=10)
                assert reply.status_code == 200
    finally:
        private.stop()


async def _post(url, body):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body) as reply:
            await reply.read()
            return reply.status

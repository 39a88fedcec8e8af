"""probe_backend against simulated ggml RPC servers and other things on the port."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvicorn

from network.rpc import RpcDevice, probe_backend
from simulator.rpc import SimulatedRpcServer, running_rpc_server

GIB = 1024**3
MakeServer = Callable[..., Awaitable[SimulatedRpcServer]]


@pytest.fixture
async def rpc_server() -> AsyncIterator[MakeServer]:
    """Start SimulatedRpcServers on this test's loop; stop them after."""
    servers: list[SimulatedRpcServer] = []

    async def make(host: str = "127.0.0.2", **kwargs) -> SimulatedRpcServer:
        server = SimulatedRpcServer(host, 0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


async def settle(server: SimulatedRpcServer, *, timeout: float = 2.0) -> None:
    """Wait until the server has finished with every connection it accepted."""
    deadline = time.monotonic() + timeout
    while server.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.open_connections == 0


@pytest.mark.parametrize(
    ("protocol", "devices", "options"),
    [
        ("7.0.0", [(20 * GIB, 24 * GIB)], {}),
        ("4.0.0", [(3 * GIB, 8 * GIB), (7 * GIB, 16 * GIB)], {}),
        ("3.6.1", [(1 * GIB, 12 * GIB), (2 * GIB, 12 * GIB)], {}),
        ("3.0.0", [(5 * GIB, 6 * GIB)], {}),
        ("2.0.0", [(11 * GIB, 12 * GIB)], {}),
        ("1.0.0", [(4 * GIB, 4 * GIB)], {}),
        ("legacy", [(9 * GIB, 10 * GIB)], {}),
        ("legacy", [(9 * GIB, 10 * GIB)], {"legacy_device_memory_cmd": 11}),
    ],
)
async def test_it_reads_the_version_and_memory_of_every_generation(
    rpc_server, protocol, devices, options
):
    server = await rpc_server(protocol=protocol, devices=devices, **options)

    probe = await probe_backend(server.host, server.port, timeout=2)

    assert probe.status == "online", probe.error
    assert probe.protocol == protocol
    assert probe.devices == tuple(
        RpcDevice(index=index, free=free, total=total)
        for index, (free, total) in enumerate(devices)
    )
    assert probe.error is None
    assert probe.latency_ms is not None and probe.latency_ms >= 0
    assert server.crashes == 0


async def test_it_reports_busy_and_leaves_the_server_serving(rpc_server):
    server = await rpc_server(protocol="7.0.0")
    server.attach()

    started = time.monotonic()
    probe = await probe_backend(server.host, server.port, timeout=0.5)
    elapsed = time.monotonic() - started

    assert probe.status == "busy"
    assert "another client" in probe.error
    assert probe.latency_ms is not None
    assert 0.45 <= elapsed < 1.5
    # The real server would now answer the abandoned HELLO and die of SIGPIPE
    # had the probe closed its socket normally.
    server.detach()
    await settle(server)
    assert server.clients_served == 1  # the abandoned connection got its turn
    assert server.crashes == 0 and server.alive
    again = await probe_backend(server.host, server.port, timeout=2)
    assert again.status == "online"
    assert again.protocol == "7.0.0"


async def test_it_leaves_the_server_serving_when_the_caller_gives_up(rpc_server):
    server = await rpc_server(protocol="3.6.1")
    server.attach()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(probe_backend(server.host, server.port, timeout=10), 0.3)

    server.detach()
    await settle(server)
    assert server.clients_served == 1
    assert server.crashes == 0 and server.alive
    probe = await probe_backend(server.host, server.port, timeout=2)
    assert probe.status == "online"


def test_it_leaves_a_server_on_another_thread_serving_after_asyncio_run():
    with running_rpc_server("127.0.0.3", protocol="2.0.0") as server:
        server.attach()

        probe = asyncio.run(probe_backend(server.host, server.port, timeout=0.3))

        assert probe.status == "busy"
        server.detach()
        again = asyncio.run(probe_backend(server.host, server.port, timeout=2))
        assert again.status == "online"
        assert again.protocol == "2.0.0"
        assert server.crashes == 0


async def test_it_reports_offline_at_once_when_the_server_is_dead(rpc_server):
    server = await rpc_server()
    server.die()

    started = time.monotonic()
    deep = await probe_backend(server.host, server.port, timeout=5)
    shallow = await probe_backend(server.host, server.port, timeout=5, deep=False)

    # Both together in less than half of one timeout: nobody waited for it.
    assert time.monotonic() - started < 2.5
    assert deep.status == shallow.status == "offline"
    assert deep.error == "connection refused"
    assert deep.latency_ms is None
    server.revive()
    assert (await probe_backend(server.host, server.port, timeout=2)).status == (
        "online"
    )


async def test_it_checks_liveness_without_sending_a_byte(rpc_server):
    server = await rpc_server()

    started = time.monotonic()
    probe = await probe_backend(server.host, server.port, timeout=2, deep=False)
    elapsed = time.monotonic() - started
    await settle(server)

    assert probe.status == "online"
    assert elapsed < 1  # a free server closes back at once: no waiting for it
    assert probe.latency_ms is not None
    assert probe.protocol is None and probe.devices == ()
    assert server.connections_accepted == 1
    assert server.bytes_received == 0


async def test_it_tells_busy_from_free_without_a_session(rpc_server):
    server = await rpc_server()
    server.attach()

    busy = await probe_backend(server.host, server.port, timeout=0.3, deep=False)
    server.detach()
    await settle(server)
    free = await probe_backend(server.host, server.port, timeout=2, deep=False)

    assert busy.status == "busy"
    assert "serving another client" in busy.error
    assert busy.latency_ms is not None
    assert free.status == "online"
    assert server.bytes_received == 0
    assert server.crashes == 0


async def test_it_reports_offline_when_the_server_dies_with_the_probe_queued(
    rpc_server,
):
    server = await rpc_server()
    server.attach()
    probe = asyncio.create_task(
        probe_backend(server.host, server.port, timeout=5, deep=False)
    )
    while not server.connections_accepted:
        await asyncio.sleep(0.01)

    started = time.monotonic()
    server.die()
    gone = await probe

    assert gone.status == "offline"
    assert "reset" in gone.error
    assert time.monotonic() - started < 1  # not the 5 s a busy verdict waits


async def test_it_never_opens_two_sessions_with_one_backend_at_once(rpc_server):
    server = await rpc_server(protocol="4.0.0", devices=[(1, 2), (3, 4)])

    probes = await asyncio.gather(
        *(probe_backend(server.host, server.port, timeout=3) for _ in range(6))
    )

    assert [probe.status for probe in probes] == ["online"] * 6
    assert server.connections_accepted == 6
    assert server.max_open_sessions == 1


async def test_it_waits_behind_a_busy_session_instead_of_queueing_another(
    rpc_server,
):
    server = await rpc_server()
    server.attach()

    probes = await asyncio.gather(
        *(probe_backend(server.host, server.port, timeout=0.4) for _ in range(3))
    )

    assert [probe.status for probe in probes] == ["busy"] * 3
    assert server.connections_accepted == 1  # the others never connected


async def test_it_explains_a_connect_timeout_behind_a_busy_server(rpc_server):
    # While ggml-rpc-server serves one client, two more connections can wait, even
    # closed ones; after that connects hang. A caller must not take this for dead.
    server = await rpc_server()
    server.attach()
    first = await probe_backend(server.host, server.port, timeout=0.3)
    second = await probe_backend(server.host, server.port, timeout=0.3, deep=False)

    third = await probe_backend(server.host, server.port, timeout=0.3, deep=False)

    assert (first.status, second.status) == ("busy", "busy")
    assert third.status == "offline" and third.connect_timed_out
    assert "timed out" in third.error and "queue" in third.error
    server.detach()
    assert (await probe_backend(server.host, server.port, timeout=3)).status == (
        "online"
    )
    assert server.crashes == 0


async def test_it_does_not_hold_up_other_backends_behind_a_busy_one(rpc_server):
    busy = await rpc_server("127.0.0.2")
    free = await rpc_server("127.0.0.4")
    busy.attach()

    async def timed(server: SimulatedRpcServer) -> tuple[str, float]:
        started = time.monotonic()
        probe = await probe_backend(server.host, server.port, timeout=3)
        return probe.status, time.monotonic() - started

    (busy_status, _), (free_status, free_elapsed) = await asyncio.gather(
        timed(busy), timed(free)
    )

    assert busy_status == "busy"
    assert free_status == "online"
    # Held behind the busy one, it would have taken the busy one's 3 s timeout.
    assert free_elapsed < 1.5


# ------------------------------------------------ something else on the port


async def _http_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_it_reports_an_http_server_incompatible(http):
    sock = socket.socket()
    sock.bind(("127.0.0.5", 0))
    server = uvicorn.Server(
        uvicorn.Config(_http_app, http=http, lifespan="off", log_level="critical")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)

        probe = await probe_backend("127.0.0.5", sock.getsockname()[1], timeout=2)
    finally:
        server.should_exit = True
        await serving

    assert probe.status == "incompatible"
    assert "HTTP/1.1" in probe.error
    assert probe.latency_ms is not None


async def _serve_raw(handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.6", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_it_reports_a_server_that_talks_first_incompatible():
    async def banner(reader, writer):
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        await reader.read(100)
        writer.close()

    server, port = await _serve_raw(banner)
    async with server:
        probe = await probe_backend("127.0.0.6", port, timeout=2)

    assert probe.status == "incompatible"
    assert "SSH-2.0-" in probe.error


async def test_it_reports_an_absurd_reply_size_incompatible():
    async def huge(reader, writer):
        await reader.readexactly(9)
        writer.write(struct.pack("<Q", 2 * 1024 * 1024) + b"\0" * 64)
        await reader.read(100)
        writer.close()

    server, port = await _serve_raw(huge)
    async with server:
        probe = await probe_backend("127.0.0.6", port, timeout=2)

    assert probe.status == "incompatible"
    assert str(2 * 1024 * 1024) in probe.error


async def test_it_reports_a_server_that_closes_on_every_generation_incompatible():
    accepted = 0

    async def hang_up(reader, writer):
        nonlocal accepted
        accepted += 1
        writer.close()

    server, port = await _serve_raw(hang_up)
    async with server:
        probe = await probe_backend("127.0.0.6", port, timeout=2)

    assert probe.status == "incompatible"
    assert "every protocol generation" in probe.error
    assert accepted == 4  # two HELLOs, then GET_DEVICE_MEMORY as 11 and as 10

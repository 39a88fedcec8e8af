"""The gateway's client (core/relay.py) against servers that misbehave on cue.

Each test scripts a raw TCP server on loopback: what it answers, when it closes,
how it splits its bytes. The gateway's own tests (network/tests/test_gateway*.py)
run the relay against simulated Ollama nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from core import relay as relay_module
from core.httpclient import BadReply, Disconnected, Unreachable
from core.relay import Relay, request_head

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Return one request's head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def scripted(handler):
    """Serve handler(reader, writer, number) on loopback; yield (url, requests)."""
    seen: dict = {"connections": 0, "requests": []}

    async def connected(reader, writer):
        seen["connections"] += 1
        try:
            await handler(reader, writer, seen)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went, or the test is over
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()


async def answer_ok(reader, writer, seen):
    while True:
        head, body = await read_request(reader)
        seen["requests"].append((head, body))
        writer.write(OK)
        await writer.drain()


async def ask(relay, url, method="GET", target="/", *, body=b"", timeout=2.0):
    return await relay.open(
        method, url, target, body=body, headers={}, first_byte_timeout=timeout
    )


async def read_all(upstream) -> list[tuple[bytes, bool]]:
    return [piece async for piece in upstream.chunks()]


async def test_connections_are_kept_alive_between_requests():
    relay = Relay(connect_timeout=2)
    async with scripted(answer_ok) as (url, seen):
        for _ in range(3):
            upstream = await ask(relay, url, "POST", "/api/chat", body=b"{}")
            assert upstream.status == 200
            assert upstream.header(b"content-type") == b"application/json"
            assert await read_all(upstream) == [(b"{}", False)]
            upstream.close()
        assert seen["connections"] == 1
        head, body = seen["requests"][0]
        assert head.startswith(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"Content-Length: 2\r\n" in head and body == b"{}"
    await relay.close()


async def test_an_idle_connection_the_server_closed_is_replaced_not_reported():
    """The keep-alive race: the server closes an idle connection as a request
    goes out on it; the request goes again on a new one, once."""

    async def answer_once_then_close(reader, writer, seen):
        head, body = await read_request(reader)
        seen["requests"].append(head)
        writer.write(OK)
        await writer.drain()
        await reader.read(1)  # the next request arrives: close without answer

    relay = Relay(connect_timeout=2)
    async with scripted(answer_once_then_close) as (url, seen):
        for _ in range(2):
            upstream = await ask(relay, url, "/api/tags")
            assert await read_all(upstream) == [(b"{}", False)]
            upstream.close()
        # The second request's first try met the closing connection; it was
        # answered on a new one, and the server saw it once.
        assert seen["connections"] == 2
        assert len(seen["requests"]) == 2
    await relay.close()


async def test_a_fresh_connection_closed_without_a_reply_is_reported():
    async def close_at_once(reader, writer, seen):
        await read_request(reader)

    relay = Relay(connect_timeout=2)
    async with scripted(close_at_once) as (url, seen):
        with pytest.raises(Disconnected, match="without a reply"):
            await ask(relay, url, "POST", "/api/chat", body=b"{}")
        assert seen["connections"] == 1  # not retried: the node did close on it
    await relay.close()


async def test_chunks_arrive_whole_in_order_as_the_server_writes_them():
    gate = asyncio.Event()

    async def stream(reader, writer, seen):
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(b"6\r\nfirst\n\r\n")
        await writer.drain()
        await gate.wait()
        # One chunk split across writes, then two in one write.
        writer.write(b"7\r\nsec")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"ond\n\r\n6\r\nthird\n\r\n0\r\n\r\n")
        await writer.drain()

    relay = Relay(connect_timeout=2)
    async with scripted(stream) as (url, _):
        upstream = await ask(relay, url, "POST", "/api/chat", body=b"{}")
        assert upstream.chunked
        pieces = upstream.chunks()
        assert await anext(pieces) == (b"first\n", True)  # before the rest is sent
        gate.set()
        assert [p async for p in pieces] == [(b"second\n", True), (b"third\n", True)]
        upstream.close()
    await relay.close()


async def test_a_body_of_known_length_is_handed_on_as_it_arrives():
    gate = asyncio.Event()

    async def halves(reader, writer, seen):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await writer.drain()
        await gate.wait()
        writer.write(b"world")
        await writer.drain()

    relay = Relay(connect_timeout=2)
    async with scripted(halves) as (url, _):
        upstream = await ask(relay, url)
        pieces = upstream.chunks()
        assert await anext(pieces) == (b"hello", False)
        gate.set()
        assert [p async for p in pieces] == [(b"world", False)]
        upstream.close()
    await relay.close()


async def test_a_body_without_length_ends_when_the_server_closes():
    async def until_close(reader, writer, seen):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    relay = Relay(connect_timeout=2)
    async with scripted(until_close) as (url, _):
        upstream = await ask(relay, url)
        assert b"".join(d for d, _ in await read_all(upstream)) == b"all of it"
        upstream.close()
    await relay.close()


async def test_a_stream_cut_mid_reply_says_so_after_what_came():
    async def cut(reader, writer, seen):
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n"
        )
        await writer.drain()

    relay = Relay(connect_timeout=2)
    async with scripted(cut) as (url, _):
        upstream = await ask(relay, url, "POST", "/api/chat", body=b"{}")
        got = []
        with pytest.raises(Disconnected, match="closed the connection mid-reply"):
            async for piece in upstream.chunks():
                got.append(piece)
        assert got == [(b"some", True)]
        upstream.close()
    await relay.close()


async def test_no_head_in_time_is_unreachable_and_the_connection_is_dropped():
    closed = asyncio.Event()

    async def silent(reader, writer, seen):
        await read_request(reader)
        await reader.read(1)  # returns at EOF: the relay hung up
        closed.set()

    relay = Relay(connect_timeout=2)
    async with scripted(silent) as (url, _):
        with pytest.raises(Unreachable, match="no answer within 0.2s"):
            await ask(relay, url, "POST", "/api/chat", body=b"{}", timeout=0.2)
        await asyncio.wait_for(closed.wait(), 2)
    await relay.close()


async def test_a_request_abandoned_while_waiting_closes_its_connection():
    closed = asyncio.Event()

    async def silent(reader, writer, seen):
        await read_request(reader)
        await reader.read(1)
        closed.set()

    relay = Relay(connect_timeout=2)
    async with scripted(silent) as (url, _):
        waiting = asyncio.ensure_future(
            ask(relay, url, "POST", "/api/chat", body=b"{}", timeout=30)
        )
        await asyncio.sleep(0.1)
        waiting.cancel()
        await asyncio.wait_for(closed.wait(), 2)  # the node stops working on it
    await relay.close()


async def test_a_refused_connection_is_unreachable_and_says_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    relay = Relay(connect_timeout=2)
    with pytest.raises(Unreachable, match="refused") as refused:
        await ask(relay, f"http://127.0.0.1:{port}")
    assert refused.value.refused
    await relay.close()


async def test_garbage_is_a_bad_reply():
    async def garbage(reader, writer, seen):
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await reader.read(1)

    relay = Relay(connect_timeout=2)
    async with scripted(garbage) as (url, _):
        with pytest.raises(BadReply, match="not an HTTP reply"):
            await ask(relay, url)
    await relay.close()


async def test_a_reply_not_read_to_its_end_leaves_its_connection_unused():
    async def two_chunks(reader, writer, seen):
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
            )
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"1\r\nb\r\n0\r\n\r\n")
            await writer.drain()

    relay = Relay(connect_timeout=2)
    async with scripted(two_chunks) as (url, seen):
        upstream = await ask(relay, url)
        pieces = upstream.chunks()
        assert await anext(pieces) == (b"a", True)
        upstream.close()  # the client went away
        upstream = await ask(relay, url)
        assert await read_all(upstream) == [(b"a", True), (b"b", True)]
        upstream.close()
        assert seen["connections"] == 2
    await relay.close()


async def test_a_reader_that_falls_behind_stops_the_reading(monkeypatch):
    """A slow client of a large reply: what waits in memory stays bounded."""
    monkeypatch.setattr(relay_module, "HIGH_WATER", 64 * 1024)
    monkeypatch.setattr(relay_module, "LOW_WATER", 16 * 1024)
    size = 8 * 1024 * 1024
    sent = {"bytes": 0}

    async def large(reader, writer, seen):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
            sent["bytes"] += len(block)

    relay = Relay(connect_timeout=2)
    async with scripted(large) as (url, _):
        upstream = await ask(relay, url)
        pieces = upstream.chunks()
        received = len((await anext(pieces))[0])
        await asyncio.sleep(0.3)  # the reader stalls; the server keeps writing
        assert upstream._buffered < 1024 * 1024
        assert sent["bytes"] < size / 2  # the server is held back, not read out
        async for data, _ in pieces:
            received += len(data)
        assert received == size
        upstream.close()
    await relay.close()


def test_a_request_head_cannot_carry_a_line_break():
    where = relay_module.origin("http://127.0.0.1:11434")
    with pytest.raises(ValueError):
        request_head("GET", where, "/api/tags\r\nX-Evil: 1", {}, 0)
    with pytest.raises(ValueError):
        request_head("GET", where, "/api/tags", {"Traceparent": "a\r\nX-Evil: 1"}, 0)
    with pytest.raises(ValueError):
        relay_module.origin("http://user:secret@127.0.0.1:11434")
    head = request_head("POST", where, "/api/chat?x=1", {"Accept": "*/*"}, 2)
    assert head == (
        b"POST /api/chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:11434\r\n"
        b"Accept: */*\r\nContent-Length: 2\r\n\r\n"
    )

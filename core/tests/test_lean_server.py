"""The gateway port's server (core/lean/server.py), spoken to byte by byte.

A small ASGI app stands in for the gateway; raw sockets stand in for clients
that pipeline, stall, lie or leave. The gateway's own tests run through this
server too (network/tests/gateway_harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from core.lean import server as server_module
from core.lean.server import Server
from tests.liveserver import free_port

EVENTS: list = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            EVENTS.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        reply = json.dumps(
            {"method": scope["method"], "size": len(body), "path": path}
        ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": reply})
    elif path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-ndjson")],
            }
        )
        for number in range(3):
            line = b'{"n":%d}\n' % number
            await send({"type": "http.response.body", "body": line, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait-for-leave":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x\n", "more_body": True})
        assert (await receive())["type"] == "http.request"  # its (empty) body
        message = await receive()
        EVENTS.append(message["type"])
    elif path == "/fail":
        raise RuntimeError("on purpose")
    elif path == "/fail-midway":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("on purpose")
    else:
        body = path.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving():
    EVENTS.clear()
    server = Server(app, "127.0.0.1", free_port(), graceful=1)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def connect(server):
    return await asyncio.open_connection("127.0.0.1", server.port)


async def reply(reader) -> tuple[bytes, dict, bytes]:
    """Read one reply: status line, headers, body (by length or chunks)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(await reader.readuntil(b"\r\n"), 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    else:
        body = await reader.read()
    return lines[0].encode(), headers, body


async def test_keep_alive_lengths_chunks_and_lifespan():
    async with serving() as server:
        assert EVENTS == ["lifespan.startup"]
        reader, writer = await connect(server)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        status, headers, body = await reply(reader)
        assert status == b"HTTP/1.1 200 OK"
        # The whole body came in one message: its length is known.
        assert headers["content-length"] == str(len(body)) and "date" in headers
        assert json.loads(body) == {"method": "POST", "size": 3, "path": "/echo"}
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await reply(reader)  # same connection
        assert headers["transfer-encoding"] == "chunked"
        assert body == b'{"n":0}\n{"n":1}\n{"n":2}\n'
        writer.write(b"GET /a%20b%0D%0A HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reply(reader))[2] == b"/a b\r\n"  # the path, decoded
        writer.close()
    assert EVENTS == ["lifespan.startup", "lifespan.shutdown"]


async def test_pipelined_requests_are_answered_in_order():
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(
            b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        )
        assert (await reply(reader))[2].startswith(b'{"n":0}')
        assert (await reply(reader))[2] == b"/second"
        assert json.loads((await reply(reader))[2])["size"] == 2
        writer.close()


async def test_http_1_0_gets_a_body_ended_by_closing():
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(b"GET /stream HTTP/1.0\r\n\r\n")
        status, headers, body = await reply(reader)
        assert "transfer-encoding" not in headers
        assert body == b'{"n":0}\n{"n":1}\n{"n":2}\n'
        assert reader.at_eof()


async def test_a_large_body_arrives_in_parts_and_100_continue_is_answered():
    async with serving() as server:
        reader, writer = await connect(server)
        size = 3 * server_module.BODY_BUFFER
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % size
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"z" * size)
        assert json.loads((await reply(reader))[2])["size"] == size
        writer.close()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    ],
)
async def test_bad_requests_get_a_json_error_and_a_closed_connection(
    request_bytes, status
):
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(request_bytes)
        line, headers, body = await reply(reader)
        assert line.split()[1] == status
        assert "error" in json.loads(body)
        assert headers["connection"] == "close"
        writer.close()
        # ... and the server goes on serving others.
        reader, writer = await connect(server)
        writer.write(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reply(reader))[2] == b"/fine"
        writer.close()


async def test_an_app_that_fails_gives_500_or_a_closed_connection():
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        line, _, body = await reply(reader)
        assert line.split()[1] == b"500" and "error" in json.loads(body)
        writer.write(b"GET /fail-midway HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in head
        rest = await asyncio.wait_for(reader.read(), 5)  # ends: the connection closed
        assert rest == b"1\r\nx\r\n"  # and no last chunk: the reply is broken
        writer.close()


async def test_the_app_hears_a_client_that_leaves():
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(b"GET /wait-for-leave HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"x\n"), 5)
        writer.close()
        for _ in range(100):
            if EVENTS[-1:] == ["http.disconnect"]:
                break
            await asyncio.sleep(0.01)
        assert EVENTS[-1:] == ["http.disconnect"]


async def test_head_replies_have_no_body():
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"content-length: 2" in head
        writer.write(b"GET /y HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reply(reader))[2] == b"/y"  # nothing of /x came before it
        writer.close()


async def test_idle_and_slow_connections_are_closed(monkeypatch):
    monkeypatch.setattr(server_module, "KEEPALIVE", 0.2)
    monkeypatch.setattr(server_module, "HEAD_TIMEOUT", 0.2)
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await reply(reader)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # idle: closed
        reader, writer = await connect(server)
        writer.write(b"GET /a HTTP/1.1\r\nHost:")  # a head that never ends
        assert await asyncio.wait_for(reader.read(), 2) == b""


async def test_servers_that_reuse_the_port_share_it():
    port = free_port()
    first = Server(app, "127.0.0.1", port, graceful=1, reuse_port=True)
    second = Server(app, "127.0.0.1", port, graceful=1, reuse_port=True)
    await first.start()
    await second.start()  # no "address already in use"
    try:
        await first.stop()  # the port stays served by the other
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reply(reader))[2] == b"/still"
        writer.close()
    finally:
        await second.stop()

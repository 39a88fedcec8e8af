"""`serve`'s WebSocket protocol (core/lean/websocket.py): many messages in one send.

A small ASGI app runs on uvicorn with the protocol, as `serve` runs the dashboard;
a websockets client reads what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from websockets.asyncio.client import connect

from core.lean.websocket import SEND_MANY, SendManyWebSocketProtocol
from tests.liveserver import free_port

SENT: list[int] = []  # SEND_MANY calls the slow-reader app has completed
BIG = "x" * 4096


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    if scope["path"] == "/extensions":
        await send({"type": "websocket.send", "text": repr(scope["extensions"])})
    elif scope["path"] == "/many":
        await send({"type": "websocket.send", "text": "first"})
        await send({"type": SEND_MANY, "texts": [f"line {i}" for i in range(1000)]})
        await send({"type": SEND_MANY, "texts": []})
        await send({"type": "websocket.send", "text": "last"})
    elif scope["path"] == "/flood":
        for i in range(40):
            await send({"type": SEND_MANY, "texts": [f"{i:02}{BIG}"] * 256})
            SENT.append(i)
    await send({"type": "websocket.close", "code": 1000})


@contextlib.asynccontextmanager
async def serving():
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=SendManyWebSocketProtocol,
        ws_per_message_deflate=False,
        log_level="warning",
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_it_offers_send_many_to_the_application():
    async with serving() as url, connect(url + "/extensions") as ws:
        assert SEND_MANY in await ws.recv()


async def test_each_text_of_send_many_is_a_message_of_its_own_in_order():
    async with serving() as url, connect(url + "/many") as ws:
        messages = [message async for message in ws]
        assert ws.close_code == 1000
    assert messages == ["first", *(f"line {i}" for i in range(1000)), "last"]


async def test_send_many_waits_while_the_client_does_not_read():
    SENT.clear()
    async with serving() as url, connect(url + "/flood", max_size=None) as ws:
        await asyncio.sleep(1.0)  # 40 MB to send: the socket's buffers fill up
        assert len(SENT) < 40  # the app waits rather than the server buffering all
        messages = [message async for message in ws]
    assert len(SENT) == 40
    assert len(messages) == 40 * 256
    assert [message[:2] for message in messages[::256]] == [
        f"{i:02}" for i in range(40)
    ]
    assert all(message[2:] == BIG for message in messages)

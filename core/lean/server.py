"""A small HTTP/1.1 server for one ASGI application: the gateway's own port.

`serve --gateway-port` serves the gateway with this server instead of a second
uvicorn. The gateway forwards thousands of small requests a second, and at that
rate uvicorn's protocol cost as much CPU as the gateway itself (bench/RESULTS.md,
"The gateway's own server"). This server does less per request: no middleware,
no access log, one write for a reply's head and its first body. It parses with
httptools (llhttp), as uvicorn does.

What it does, and what a client can count on:
- keep-alive, with idle connections closed after KEEPALIVE seconds; a request's
  head must arrive within HEAD_TIMEOUT seconds of its first byte, and may be at
  most MAX_HEAD bytes (431 beyond);
- pipelined requests are answered in order, one at a time;
- the body reaches the app as it arrives, with reading paused while BODY_BUFFER
  bytes wait unread; `Expect: 100-continue` is answered when the app first asks
  for the body;
- a reply with no Content-Length is sent chunked (closed at its end for
  HTTP/1.0), unless its whole body comes in the first message;
- writing waits while the client reads slowly (the transport's high-water mark);
- `http.disconnect` comes when the client goes away, and at once after the reply;
- a garbled request gets 400 and the connection is closed; an app that fails
  before it answered gets 500; a reply the app leaves unfinished closes the
  connection;
- no WebSockets, no HTTP/2, no TLS: the dashboard's port serves those.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import httptools

logger = logging.getLogger(__name__)

KEEPALIVE = 5.0  # seconds an idle connection is kept open
HEAD_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its head
MAX_HEAD = 64 * 1024  # bytes of request line and headers
BODY_BUFFER = 256 * 1024  # bytes of unread body before reading pauses
REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
NO_BODY = frozenset({204, 304})

_date: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    """Return the Date header's line, made at most once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n")
    return _date[1]


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode()


class Server:
    """Serve app on host:port until `should_exit` (or `stop()`).

    Runs the app's lifespan (startup before the port opens, shutdown after it
    closes) when the app takes one.
    """

    def __init__(
        self,
        app: Callable,
        host: str,
        port: int,
        *,
        graceful: float = 5.0,
        reuse_port: bool = False,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.graceful = graceful  # seconds replies in flight may take at stop
        self.reuse_port = reuse_port  # processes share the port (SO_REUSEPORT)
        self.started = False
        self.should_exit = False
        self.connections: set[_Protocol] = set()
        self._server: asyncio.base_events.Server | None = None
        self._lifespan: _Lifespan | None = None

    async def serve(self) -> None:
        """Start, serve until should_exit is set, then stop."""
        await self.start()
        try:
            while not self.should_exit:
                await asyncio.sleep(0.1)
        finally:
            await self.stop()

    async def start(self) -> None:
        self._lifespan = _Lifespan(self.app)
        await self._lifespan.startup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Protocol(self),
            self.host,
            self.port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
            backlog=2048,
        )
        self.started = True

    async def stop(self) -> None:
        """Stop taking connections, let replies in flight finish (a while), close."""
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.close_when_idle()
            deadline = time.monotonic() + self.graceful
            while self.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for connection in list(self.connections):
                connection.abort()
            await self._server.wait_closed()
            self._server = None
        if self._lifespan is not None:
            await self._lifespan.shutdown()
            self._lifespan = None
        self.started = False


class _Lifespan:
    """The ASGI lifespan protocol, for an app that takes it."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.supported = True

    async def startup(self) -> None:
        self.task = asyncio.create_task(self._run(), name="lifespan")
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        if message is None:
            return  # the app takes no lifespan
        if message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"start-up failed: {message.get('message', '')}")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except Exception:
            self.supported = False
            logger.debug("the app takes no lifespan", exc_info=True)
        finally:
            await self.outbox.put(None)


class _Protocol(asyncio.Protocol):
    """One client connection: its requests parsed, answered one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.cycles: deque[_Cycle] = deque()  # [0] is being answered
        self.parsing: _Cycle | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.lost = False
        self.paused_reading = False
        self.writable: asyncio.Future | None = None  # set while writing is paused

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self.local = (local[0], local[1]) if isinstance(local, tuple) else None
        self._wait(KEEPALIVE)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "this port serves plain HTTP requests, no upgrades")
        except httptools.HttpParserError as exc:
            # (An error raised in a callback reaches here wrapped.)
            if self.head_size > MAX_HEAD:
                self._refuse(431, f"the request's head is over {MAX_HEAD} bytes")
            else:
                self._refuse(400, f"not an HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        for cycle in self.cycles:
            cycle.disconnected()
        if self.parsing is not None and self.parsing not in self.cycles:
            self.parsing.disconnected()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    # -------------------------------------------------------- the parser's

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0
        self._wait(HEAD_TIMEOUT)

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        self._count(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path, encoding="latin-1")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(),
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.local,
        }
        cycle = _Cycle(self, scope, self.parser.should_keep_alive())
        cycle.expects_continue = (b"expect", b"100-continue") in self.headers
        self.parsing = cycle
        self.cycles.append(cycle)
        if len(self.cycles) == 1:
            cycle.start()
        else:  # pipelined: wait until the ones before it are answered
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is not None:
            cycle.add_body(body)

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is not None:
            cycle.body_complete()
        self.parsing = None

    # ------------------------------------------------------------ helpers

    def _count(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            raise _TooLarge

    def _wait(self, seconds: float) -> None:
        """Close the connection if nothing happens for seconds."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(seconds, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if not self.cycles:
            self.abort()

    def _pause_reading(self) -> None:
        if not self.paused_reading and not self.lost:
            self.paused_reading = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.paused_reading and not self.lost:
            self.paused_reading = False
            self.transport.resume_reading()

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be served, then close the connection."""
        if self.cycles and self.cycles[0].answering:
            self.abort()  # a reply has begun: nothing else may be written
            return
        body = b'{"error":' + _json_string(message[:300]).encode() + b"}"
        self.write(
            status_line(status)
            + b"content-type: application/json; charset=utf-8\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n".encode()
            + date_header()
            + b"\r\n"
            + body
        )
        self.closing = True
        self.abort()

    def write(self, data: bytes) -> None:
        if not self.lost:
            self.transport.write(data)

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.cycles:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def finished(self, cycle: _Cycle, keep_alive: bool) -> None:
        """cycle's reply is complete: go on with the next request, or close."""
        if self.cycles and self.cycles[0] is cycle:
            self.cycles.popleft()
        if not keep_alive or self.closing:
            self.closing = True
            self.abort()
            return
        if self.cycles:
            self.cycles[0].start()
            if len(self.cycles) == 1:
                self._resume_reading()
        else:
            self._resume_reading()
            self._wait(KEEPALIVE)


class _TooLarge(Exception):
    """The request's head is over MAX_HEAD."""


def _json_string(text: str) -> str:
    return json.dumps(text)


class _Cycle:
    """One request and its reply: the ASGI receive and send."""

    __slots__ = (
        "protocol",
        "scope",
        "keep_alive",
        "expects_continue",
        "body",
        "buffered",
        "complete",
        "delivered",
        "gone",
        "waiter",
        "answering",
        "answered",
        "status",
        "head",
        "chunked",
        "head_only",
        "task",
    )

    def __init__(self, protocol: _Protocol, scope: dict, keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.expects_continue = False
        self.body: list[bytes] = []
        self.buffered = 0
        self.complete = False  # the whole request body has come
        self.delivered = False  # ... and was handed to the app
        self.gone = False  # the client went away
        self.waiter: asyncio.Future | None = None
        self.answering = False  # the reply's head was written
        self.answered = False  # the reply is complete
        self.status = 0
        self.head: list[tuple[bytes, bytes]] | None = None
        self.chunked = False
        self.head_only = scope["method"] == "HEAD"
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = self.protocol.loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.protocol.server.app(self.scope, self.receive, self.send)
        except Exception:
            if not self.gone:
                logger.exception("the app failed on %s", self.scope["path"][:200])
        if self.answered:
            return
        if not self.answering and not self.gone:
            await self._plain(500, "the server failed to answer; its log says why")
        else:  # a reply begun and left unfinished cannot be completed
            self.answered = True
            self.protocol.finished(self, keep_alive=False)

    async def _plain(self, status: int, message: str) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8")],
            }
        )
        body = b'{"error":' + _json_string(message).encode() + b"}"
        await self.send({"type": "http.response.body", "body": body})

    # the request, as it comes

    def add_body(self, data: bytes) -> None:
        self.body.append(data)
        self.buffered += len(data)
        if self.buffered > BODY_BUFFER:
            self.protocol._pause_reading()
        self._wake()

    def body_complete(self) -> None:
        self.complete = True
        self._wake()

    def disconnected(self) -> None:
        self.gone = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict:
        if self.expects_continue and not self.answering and not self.gone:
            self.expects_continue = False
            self.protocol.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not self.delivered:
            while not (self.body or self.complete or self.gone or self.answered):
                await self._sleep()
            if self.body or self.complete:
                if self.gone and not self.complete:
                    return {"type": "http.disconnect"}  # the body will not end
                data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.buffered = 0
                if len(self.protocol.cycles) <= 1:
                    self.protocol._resume_reading()
                self.delivered = self.complete
                return {
                    "type": "http.request",
                    "body": data,
                    "more_body": not self.complete,
                }
        # The body was read: what comes next is the end of the exchange.
        while not (self.gone or self.answered):
            await self._sleep()
        return {"type": "http.disconnect"}

    async def _sleep(self) -> None:
        self.waiter = self.protocol.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    # the reply

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.head is not None:
                raise RuntimeError("the reply was already started")
            self.status = message["status"]
            self.head = list(message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind}")
        if self.head is None:
            raise RuntimeError("a reply body before its start")
        if self.answered:
            raise RuntimeError("the reply was already complete")
        protocol = self.protocol
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.gone:
            if not more:
                self.answered = True
            return
        out = b""
        if not self.answering:
            out = self._head_bytes(body, more)
            self.answering = True
        if self.head_only or self.status in NO_BODY:
            pass
        elif self.chunked:
            if body:
                out += b"%x\r\n" % len(body) + body + b"\r\n"
            if not more:
                out += b"0\r\n\r\n"
        else:
            out += body
        if out:
            protocol.write(out)
        if not more:
            self.answered = True
            self._wake()
            keep_alive = self.keep_alive and self.complete and not protocol.closing
            protocol.finished(self, keep_alive)
            return
        writable = protocol.writable
        if writable is not None and not writable.done():
            await writable

    def _head_bytes(self, body: bytes, more: bool) -> bytes:
        assert self.head is not None
        lines = [status_line(self.status)]
        has_length = False
        closes = False
        for name, value in self.head:
            name = name.lower()
            if name == b"content-length":
                has_length = True
            elif name == b"connection":
                closes = b"close" in value.lower()
            elif name == b"transfer-encoding":
                continue  # this server frames the body itself
            lines.append(name + b": " + value + b"\r\n")
        if self.status in NO_BODY or self.status < 200:
            pass
        elif not has_length:
            if not more:
                lines.append(b"content-length: %d\r\n" % len(body))
            elif self.scope["http_version"] == "1.1":
                lines.append(b"transfer-encoding: chunked\r\n")
                self.chunked = True
            else:
                closes = True  # HTTP/1.0: the body ends with the connection
        if closes or not self.keep_alive:
            self.keep_alive = False
            if not closes:
                lines.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(date_header())
        lines.append(b"\r\n")
        return b"".join(lines)

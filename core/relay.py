"""The gateway's client: requests forwarded, replies handed on as they arrive.

Written on asyncio's protocols and httptools (llhttp, the parser uvicorn uses)
rather than aiohttp. Passing a reply on needs none of a general client's parts.
It sets no cookies, follows no redirects and inflates nothing. Profiles of the
gateway at saturation put a third of its CPU in aiohttp's client
(bench/RESULTS.md, "The gateway's own client").

- A reply is read as the server writes it. `Upstream.chunks()` yields each HTTP
  chunk whole, with `end=True`, and a body of known length piece by piece as it
  comes. Reading pauses when the reader falls HIGH_WATER bytes behind.
- Connections to each origin are kept alive for KEEPALIVE seconds between
  requests, at most MAX_IDLE of them an origin. A connection goes back to the
  pool as soon as its reply has been read whole, before the reader has handed
  it all on.
- A server may close an idle connection just as a request is written to it
  (keep-alive race). When a reused connection ends with not one byte of reply,
  the request is sent once more on a new connection. This is the only retry.
  Any other failure before the reply's head is raised, and the caller may try
  elsewhere.

Errors are core.httpclient's: `Unreachable` (no connection, or no reply head
within first_byte_timeout), `Disconnected` (closed before the reply ended),
`BadReply` (not an HTTP reply).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

from core.httpclient import BadReply, Disconnected, HttpError, Unreachable

KEEPALIVE = 30.0  # seconds an idle connection is kept open
MAX_IDLE = 256  # idle connections kept per origin; more are closed
HIGH_WATER = 256 * 1024  # bytes read ahead of the reader before reading pauses
LOW_WATER = 64 * 1024  # ... and resumes


class Origin(NamedTuple):
    """Where a base URL's requests go, and what their head says of it."""

    scheme: str
    host: str
    port: int
    netloc: str  # the Host header: host[:port] as the URL has it
    prefix: str  # a path the server is mounted under ("" for none)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@functools.lru_cache(maxsize=4096)
def origin(base_url: str) -> Origin:
    """Return base_url's origin; raise ValueError for what is not http(s)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url}")
    if "@" in parts.netloc:
        raise ValueError("credentials go in a header, not in the URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Origin(
        parts.scheme, parts.hostname, port, parts.netloc, parts.path.rstrip("/")
    )


def request_head(
    method: str, where: Origin, target: str, headers: dict[str, str], length: int
) -> bytes:
    """Return a request's head. target is path and query, already encoded."""
    printable = target.isascii() and target.isprintable() and " " not in target
    if not (target.startswith("/") and printable):
        raise ValueError(f"not a request target: {target[:100]!r}")
    lines = [f"{method} {where.prefix}{target} HTTP/1.1\r\nHost: {where.netloc}\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}\r\n")
    if length or method not in ("GET", "HEAD", "DELETE"):
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class Relay:
    """Keep-alive connections to the servers a process forwards requests to."""

    def __init__(self, *, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Nothing to open ahead: connections are made as requests need them."""

    async def close(self) -> None:
        """Close every connection, idle or in use."""
        for connection in list(self._open):
            connection.drop()
        self._idle.clear()
        await asyncio.sleep(0)  # the transports close their sockets on the next turn

    async def open(
        self,
        method: str,
        base_url: str,
        target: str,
        *,
        body: bytes,
        headers: dict[str, str],
        first_byte_timeout: float,
    ) -> Upstream:
        """Send a request; return once the reply's head came; raise HttpError.

        base_url is the server's (scheme://host:port[/prefix]); target the
        request's path and query, percent-encoded. `Upstream.close()` gives the
        connection back (or drops it, when the reply was not read to its end).
        """
        where = origin(base_url)
        request = request_head(method, where, target, headers, len(body)) + body
        reused = True
        while True:
            connection = self._take(where)
            if connection is None:
                connection = await self._connect(where)
                reused = False
            upstream = Upstream(connection, method)
            connection.send(upstream, request)
            try:
                await upstream.head(first_byte_timeout)
            except Disconnected:
                if reused and not upstream.answered:
                    reused = False  # an idle connection the server had closed
                    continue
                raise
            except asyncio.CancelledError:
                connection.drop()  # the request is abandoned: so is its reply
                raise
            return upstream

    # ------------------------------------------------------------ connections

    def _take(self, where: Origin) -> _Connection | None:
        idle = self._idle.get(where)
        while idle:
            connection = idle.pop()
            if connection.usable():
                connection.wake()
                return connection
        return None

    def _give_back(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= MAX_IDLE:
            connection.drop()
            return
        idle.append(connection)
        connection.sleep(KEEPALIVE)

    def _forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    async def _connect(self, where: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if where.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, where),
                    where.host,
                    where.port,
                    ssl=tls,
                    server_hostname=where.host if tls else None,
                )
        except TimeoutError:
            raise Unreachable(
                f"cannot connect to {where.where}: no answer within "
                f"{self.connect_timeout:g}s"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise Unreachable(
                f"{where.where}: TLS certificate refused: {exc.verify_message}"
            ) from None
        except socket.gaierror as exc:
            raise Unreachable(f"cannot resolve {where.host}: {exc.strerror}") from None
        except ConnectionRefusedError:
            raise Unreachable(
                f"cannot connect to {where.where}: refused", refused=True
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise Unreachable(f"cannot connect to {where.where}: {reason}") from None
        self._open.add(connection)
        return connection


class _Connection(asyncio.Protocol):
    """One connection to a server: one request at a time, its reply parsed."""

    def __init__(self, relay: Relay, where: Origin) -> None:
        self.relay = relay
        self.origin = where
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.reply: Upstream | None = None
        self.lost = False
        self._expiry: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's too

    def data_received(self, data: bytes) -> None:
        reply = self.reply
        if reply is None or self.parser is None:
            self.drop()  # bytes no request asked for: the server is confused
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            verdict = " ".join(str(exc).split())
            reply.fail(BadReply(f"not an HTTP reply: {verdict}"[:200]))
            self.drop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._expiry is not None:
            self._expiry.cancel()
        self.relay._forget(self)
        if self.reply is not None:
            self.reply.lost()
            self.reply = None

    def pause_writing(self) -> None:  # a request body larger than the buffer
        pass

    def resume_writing(self) -> None:
        pass

    # the pool's

    def usable(self) -> bool:
        return (
            not self.lost
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def send(self, reply: Upstream, request: bytes) -> None:
        assert self.transport is not None and self.reply is None
        self.reply = reply
        self.parser = httptools.HttpResponseParser(reply)
        self.transport.write(request)

    def done(self, keep_alive: bool) -> None:
        """The reply was read whole: keep the connection for the next one."""
        self.reply = None
        self.parser = None
        if keep_alive and self.usable():
            self.relay._give_back(self)
        else:
            self.drop()

    def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(seconds, self.drop)

    def wake(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def drop(self) -> None:
        self.reply = None
        if self.transport is not None:
            self.transport.close()
        self.relay._forget(self)


class Upstream:
    """A reply whose head has come; its body is read with `chunks()`.

    Also the parser's callback object (httptools calls on_header & co.).
    """

    def __init__(self, connection: _Connection, method: str) -> None:
        self._connection = connection
        self._method = method
        self._loop = asyncio.get_running_loop()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []  # names in lower case
        self.chunked = False
        self.answered = False  # a byte of the reply came
        self._head: asyncio.Future = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._queue: deque[tuple[bytes, bool]] = deque()
        self._piece: list[bytes] = []  # the HTTP chunk being read
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._error: HttpError | None = None
        self._waiter: asyncio.Future | None = None
        self._until_close = False  # no length, not chunked: the body ends at EOF

    def header(self, name: bytes) -> bytes | None:
        """Return the first value of a header (name in lower case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def head(self, timeout: float) -> None:
        """Wait for the reply's head; raise HttpError."""
        self._timer = self._loop.call_later(timeout, self._timed_out, timeout)
        try:
            await self._head
        finally:
            self._timer.cancel()

    async def chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        """Yield (data, whether an HTTP chunk ends here) as the body arrives.

        Raise `Disconnected` when the server ends the connection mid-body.
        """
        queue = self._queue
        while True:
            while queue:
                data, end = queue.popleft()
                self._buffered -= len(data)
                if self._paused and self._buffered < LOW_WATER:
                    self._paused = False
                    self._connection.resume()
                yield data, end
            if self._error is not None:
                raise self._error
            if self._complete:
                return
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Give the connection back when the body was read whole, else drop it."""
        if self._timer is not None:
            self._timer.cancel()
        if not self._complete and self._error is None:
            self._error = Disconnected("the reply was not read to its end")
            self._connection.drop()
        self._queue.clear()

    # what the connection tells

    def fail(self, error: HttpError) -> None:
        if not self._head.done():
            self._head.set_exception(error)
        elif not self._complete and self._error is None:
            self._error = error
            self._wake()

    def lost(self) -> None:
        """The connection ended before the reply was complete."""
        if self._complete:
            return
        if not self._head.done():
            self._head.set_exception(
                Disconnected("closed the connection without a reply")
            )
        elif self._until_close:
            self._flush_piece()
            self._complete = True
            self._wake()
        elif self._error is None:
            self._error = Disconnected("closed the connection mid-reply")
            self._wake()

    def _timed_out(self, timeout: float) -> None:
        if not self._head.done():
            self._head.set_exception(
                Unreachable(f"no answer within {timeout:g}s", refused=False)
            )
            self._connection.drop()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _push(self, data: bytes, end: bool) -> None:
        self._queue.append((data, end))
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.pause()
        self._wake()

    def _flush_piece(self) -> None:
        if self._piece:
            self._push(b"".join(self._piece), True)
            self._piece.clear()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self.answered = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._connection.parser
        assert parser is not None
        self.status = parser.get_status_code()
        encoding = self.header(b"transfer-encoding")
        self.chunked = encoding is not None and b"chunked" in encoding.lower()
        self._until_close = not self.chunked and self.header(b"content-length") is None
        if not self._head.done():
            self._head.set_result(None)
        if self._method == "HEAD":  # no body follows, whatever the head says
            self._complete = True
            self._connection.done(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        if self.chunked:
            self._piece.append(body)
        else:
            self._push(body, False)

    def on_chunk_complete(self) -> None:
        self._flush_piece()

    def on_message_complete(self) -> None:
        if self._complete:
            return
        self._flush_piece()
        self._complete = True
        parser = self._connection.parser
        keep_alive = parser is not None and parser.should_keep_alive()
        self._connection.done(keep_alive)
        self._wake()

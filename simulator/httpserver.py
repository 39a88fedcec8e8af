"""HTTP/1.1 as Go's net/http speaks it, for the simulators: parse, answer, stream.

A small asyncio ``Protocol`` per connection (keep-alive, pipelining, Content-Length
and chunked bodies, ``Connection: close``, HTTP/1.0) in front of a ``Site``, which
answers each request at once (``Response``), late (``Later``) or never (``HANG``).
Headers go out in the order net/http writes them; JSON as encoding/json writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote, urlsplit

MIB = 1024**2
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * MIB


@dataclass(slots=True)
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names; the last one of a name wins
    body: bytes
    http10: bool
    keep_alive: bool

    def json(self) -> Any:
        """Return the body as JSON; raise EOFError if empty, ValueError if not JSON."""
        if not self.body.strip():
            raise EOFError
        return json.loads(self.body)


@dataclass(slots=True)
class Response:
    """One HTTP response, encoded the way Go's net/http writes it."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    chunks: list[bytes] | None = None  # a streamed body: Transfer-Encoding: chunked
    close: bool = False


class Hang:
    """The answer that never comes."""


HANG = Hang()


@dataclass(slots=True)
class Later:
    """Ask the site again (``Site.respond``) after this many seconds."""

    seconds: float


class Reset:
    """No answer: the connection is reset (RST), as by a server that gave up."""


RESET = Reset()


class Deferred:
    """An answer that takes time: it writes through the connection when ready.

    ``begin`` hands it the connection (which answers nothing else meanwhile) and
    must not finish synchronously; it then calls the connection's ``stream`` (the
    head with the first chunks, more chunks, the last ones with ``end``), or
    ``finish`` with a whole response, or ``abort``/``reset``. ``lost`` tells it the
    connection went away first: closed by the client (``client_gone``), or
    dropped by the server itself (``abort``, ``reset``, a node that dies).
    """

    __slots__ = ()

    def begin(self, connection: HttpConnection, request: Request) -> None:
        """Start answering ``request`` on ``connection``."""
        raise NotImplementedError

    def lost(self, client_gone: bool) -> None:
        """Stop: the connection is gone."""


Outcome = Response | Hang | Later | Reset | Deferred


JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
NDJSON = "application/x-ndjson"

STATUSES = {s.value for s in HTTPStatus}
_date_cache: list[Any] = [0, b""]


def _http_date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:  # one strftime a second, however many requests
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


def json_response(status: int, payload: Any, **kwargs: Any) -> Response:
    """Return ``payload`` as Go's encoding/json writes it: compact, HTML-escaped."""
    return Response(status, go_json(payload), JSON, **kwargs)


def go_json(payload: Any) -> bytes:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e")
        text = text.replace("&", "\\u0026")
    return text.encode()


def encode_head(response: Response, request: Request | None) -> bytes:
    """Return the status line and headers of ``response``, as net/http orders them.

    A response with ``chunks`` (even an empty list) is streamed: chunked on
    HTTP/1.1, ended by closing on HTTP/1.0; ``response.close`` says whether the
    connection closes after it.
    """
    http10 = request is not None and request.http10
    status = response.status
    reason = (
        HTTPStatus(status).phrase if status in STATUSES else f"status code {status}"
    )
    lines = [f"HTTP/1.{0 if http10 else 1} {status} {reason}".encode()]
    handler_headers = list(response.headers)
    if response.content_type is not None:
        handler_headers.append(("Content-Type", response.content_type))
    lines += [f"{name}: {value}".encode() for name, value in sorted(handler_headers)]
    streamed = response.chunks is not None
    if streamed and http10:
        response.close = True  # HTTP/1.0 has no chunking: the body ends with close
    if response.close and not http10:
        lines.append(b"Connection: close")
    elif http10 and not response.close:
        lines.append(b"Connection: keep-alive")
    if streamed and not http10:
        lines.append(b"Transfer-Encoding: chunked")
    lines.append(b"Date: " + _http_date())
    if not streamed:
        lines.append(b"Content-Length: " + str(len(response.body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def encode(response: Response, request: Request | None) -> bytes:
    """Return the bytes of ``response``: its head, then its whole body."""
    head = encode_head(response, request)
    if request is not None and request.method == "HEAD":
        return head
    if response.chunks is None:
        return head + response.body
    if request is not None and request.http10:
        return head + b"".join(response.chunks)
    parts = [b"%x\r\n%s\r\n" % (len(c), c) for c in response.chunks if c]
    return head + b"".join(parts) + b"0\r\n\r\n"


def _early_error(status: str, detail: str = "") -> bytes:
    """Return net/http's reply to a request it could not parse (then it closes)."""
    text = status + (f": {detail}" if detail else "")
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\n\r\n{text}"
    ).encode()


class _BadRequest(Exception):
    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.raw = raw


class Site:
    """What a connection serves: a simulated node or the control surface."""

    def connection_opened(self, connection: HttpConnection) -> None:
        """Note an accepted connection."""

    def connection_closed(self, connection: HttpConnection) -> None:
        """Forget a closed connection."""

    def dispatch(self, request: Request) -> Outcome:
        """Return the answer now, never, after a delay, or over time."""
        return self.respond(request)

    def respond(self, request: Request) -> Outcome:
        """Return the response to ``request`` (never ``Later``)."""
        raise NotImplementedError


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection: parse, answer in order, keep alive or close."""

    __slots__ = (
        "site",
        "generation",
        "transport",
        "buffer",
        "head",
        "busy",
        "timer",
        "closed",
        "peer_done",
        "deferred",
        "request",
        "streaming",
    )

    def __init__(self, site: Site, generation: int = 0) -> None:
        self.site = site
        self.generation = generation  # which life of the node accepted it
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: Request | None = None  # parsed head whose body is still arriving
        self.busy = False  # an answer is pending (delayed, hung, deferred)
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.peer_done = False  # the client shut down its sending side
        self.deferred: Deferred | None = None  # answering over time
        self.request: Request | None = None  # the request it answers
        self.streaming: Response | None = None  # the head of a body being streamed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.site.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self._drop_deferred(client_gone=True)
        self.site.connection_closed(self)

    def eof_received(self) -> bool:
        if self.deferred is not None:
            # Go's net/http reads on behind a handler: EOF cancels the request's
            # context, and Ollama stops the work (queued or generating).
            self.closed = True
            self._drop_deferred(client_gone=True)
            return False
        # A client may half-close after its last request: answer it (or, hung,
        # keep not answering it), then close.
        self.peer_done = True
        return self.busy

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _MAX_BODY + _MAX_HEAD:
            self.abort()
            return
        if not self.busy:
            self._process()

    def abort(self) -> None:
        """Drop the connection without a word, as a crashed server's kernel does."""
        # abort() closes the socket on the next loop turn; shut it down now so the
        # client sees the drop at once, like a process that died.
        self._drop(lambda sock: sock.shutdown(socket.SHUT_RDWR))

    def reset(self) -> None:
        """Drop the connection with a TCP RST: the client's read fails at once."""
        # Linger on, timeout 0: closing the socket sends RST, not FIN.
        linger = struct.pack("ii", 1, 0)
        self._drop(
            lambda sock: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        )

    def _drop(self, prepare: Callable[[socket.socket], object]) -> None:
        """Close the connection at once, after prepare(socket) readied how."""
        self.closed = True
        self._drop_deferred(client_gone=False)
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= 0:
            # Through a duplicate, which shares the socket: uvloop's socket
            # stand-in refuses shutdown() and setsockopt().
            with contextlib.suppress(OSError):
                twin = socket.fromfd(sock.fileno(), sock.family, sock.type)
                try:
                    prepare(twin)
                finally:
                    twin.close()
        self.transport.abort()

    # ------------------------------------------------- what a Deferred calls

    def stream(
        self, chunks: list[bytes], *, head: Response | None = None, end: bool = False
    ) -> None:
        """Write body chunks of a streamed answer in one write (one syscall).

        ``head``: the streamed response whose head goes first (its first chunks
        with it, as net/http flushes them); ``end``: the body ends here, and with
        it the answer.
        """
        if self.closed:
            return
        assert self.transport is not None and self.request is not None
        if head is None and not end and len(chunks) == 1 and not self.request.http10:
            chunk = chunks[0]  # the common case: one token, on time
            self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            return
        if self.request.http10:
            data = b"".join(chunks)
        else:
            data = b"".join([b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c])
            if end:
                data += b"0\r\n\r\n"
        if head is not None:
            if not self.request.keep_alive:
                head.close = True
            if head.chunks is None:
                head.chunks = []
            self.streaming = head
            data = encode_head(head, self.request) + data
        self.transport.write(data)
        if end:
            close = self.streaming is not None and self.streaming.close
            self.streaming = None
            self._answered(close)

    def finish(self, response: Response) -> None:
        """Write the whole ``response`` now; the answer is done."""
        if self.closed:
            return
        assert self.request is not None
        self._send(response, self.request)
        self._answered(False)

    # ------------------------------------------------------------- internals

    def _drop_deferred(self, client_gone: bool) -> None:
        deferred = self.deferred
        if deferred is not None:
            self.deferred = None
            deferred.lost(client_gone)

    def _answered(self, close: bool) -> None:
        """A deferred answer is written: go on with what is pipelined, or close."""
        self.deferred = None
        self.request = None
        assert self.transport is not None
        if close:
            self.closed = True
            self.transport.close()
            return
        if self.closed:
            return
        self.busy = False
        self._process()
        if self.peer_done and not self.busy and not self.closed:
            self.closed = True
            self.transport.close()

    def _process(self) -> None:
        while not self.busy and not self.closed:
            try:
                request = self._parse()
            except _BadRequest as bad:
                self._write_raw(bad.raw)
                return
            if request is None:
                return
            self._handle(self.site.dispatch(request), request)

    def _handle(self, outcome: Outcome, request: Request) -> None:
        if isinstance(outcome, Response):
            self._send(outcome, request)
        elif isinstance(outcome, Hang):
            self.busy = True
        elif isinstance(outcome, Later):
            self.busy = True
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(outcome.seconds, self._answer_late, request)
        elif isinstance(outcome, Reset):
            self.reset()
        else:
            self.busy = True
            self.deferred = outcome
            self.request = request
            outcome.begin(self, request)

    def _answer_late(self, request: Request) -> None:
        self.timer = None
        if self.closed:
            return
        self.busy = False
        self._handle(self.site.respond(request), request)
        if self.busy or self.closed:
            return
        self._process()
        if self.peer_done and not self.busy and not self.closed:
            self.closed = True
            assert self.transport is not None
            self.transport.close()

    def _send(self, response: Response, request: Request) -> None:
        if not request.keep_alive:
            response.close = True
        assert self.transport is not None
        self.transport.write(encode(response, request))
        if response.close:
            self.closed = True
            self.transport.close()

    def _write_raw(self, raw: bytes) -> None:
        assert self.transport is not None
        self.transport.write(raw)
        self.closed = True
        self.transport.close()

    def _parse(self) -> Request | None:
        """Take one complete request off the buffer, or return None for more."""
        buffer = self.buffer
        if self.head is None:
            # RFC 9112 §2.2: ignore empty lines before the request line.
            while buffer[:2] == b"\r\n":
                del buffer[:2]
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise _BadRequest(
                        _early_error("431 Request Header Fields Too Large")
                    )
                return None
            head = _parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
            self.head = head
            if (
                head.headers.get("expect", "").lower() == "100-continue"
                and self._body_missing(head)
                and self.transport is not None
            ):
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head = self.head
        body = self._take_body(head)
        if body is None:
            return None
        self.head = None
        head.body = body
        return head

    def _body_missing(self, head: Request) -> bool:
        length = head.headers.get("content-length")
        return bool(length and length.isdigit() and int(length) > len(self.buffer))

    def _take_body(self, head: Request) -> bytes | None:
        buffer = self.buffer
        if "chunked" in head.headers.get("transfer-encoding", "").lower():
            parsed = _parse_chunked(buffer)
            if parsed is None:
                return None
            body, used = parsed
            del buffer[:used]
            return body
        length_text = head.headers.get("content-length", "0").strip() or "0"
        if not length_text.isdigit():
            raise _BadRequest(_early_error("400 Bad Request", "bad Content-Length"))
        length = int(length_text)
        if length > _MAX_BODY:
            raise _BadRequest(_early_error("413 Request Entity Too Large"))
        if len(buffer) < length:
            return None
        body = bytes(buffer[:length])
        del buffer[:length]
        return body


def _parse_head(raw: bytes) -> Request:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha():
        raise _BadRequest(_early_error("400 Bad Request", "malformed request line"))
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(_early_error("505 HTTP Version Not Supported"))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(_early_error("400 Bad Request", "malformed header"))
        headers[name.lower()] = value.strip()
    http10 = version == "HTTP/1.0"
    if not http10 and "host" not in headers:
        raise _BadRequest(
            _early_error("400 Bad Request", "missing required Host header")
        )
    if target.startswith(("http://", "https://")):
        split = urlsplit(target)
        path, query = split.path or "/", split.query
    else:
        path, _, query = target.partition("?")
    if "%" in path:
        path = unquote(path)
    connection = headers.get("connection", "").lower()
    if http10:
        keep_alive = "keep-alive" in connection
    else:
        keep_alive = "close" not in connection
    return Request(method, path, query, headers, b"", http10, keep_alive)


def _parse_chunked(buffer: bytearray) -> tuple[bytes, int] | None:
    """Return (body, bytes used) of a complete chunked body, or None for more."""
    position = 0
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(_early_error("400 Bad Request", "bad chunk")) from None
        position = line_end + 2
        if size == 0:
            # Trailers (usually none) end with an empty line.
            end = buffer.find(b"\r\n", position)
            while end >= 0 and end != position:
                position = end + 2
                end = buffer.find(b"\r\n", position)
            if end < 0:
                return None
            return bytes(body), end + 2
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2
        if len(body) > _MAX_BODY:
            raise _BadRequest(_early_error("413 Request Entity Too Large"))


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen now, so connections queue before the loop serves them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """A listening socket whose accepts the loop hands to ``HttpConnection``.

    Opening and closing are synchronous (no ``create_server`` task in flight), so
    ``die()`` is refused-at-once and ``die(); revive()`` in one breath just works.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self.loop = loop
        self.factory = factory
        self.sock = _listen(host, port)
        self.port: int = self.sock.getsockname()[1]
        self._adopting: set[asyncio.Task[Any]] = set()
        loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(128):  # drain the backlog, then give others a turn
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and friends: leave the rest in the backlog
                return
            conn.setblocking(False)
            task = self.loop.create_task(self._adopt(conn))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Stop listening: connecting is refused from now on."""
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

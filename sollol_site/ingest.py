"""The lean lane: hot ingest endpoints served before Django, with group commit.

A handler here parses and validates in the event loop, then hands the item to a
BatchWriter: one thread with one database connection that writes everything that
arrived together in one transaction and answers each request only after that
transaction committed. Under load, batches grow by themselves; alone, a request
waits for nothing but its own commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    connection,
)
from django.http.request import split_domain_port, validate_host
from django.utils import timezone

from sollol_site import jsonio, ratelimit
from sollol_site.auth import check_bearer
from sollol_site.parsers import body_limit, too_large_message

logger = logging.getLogger(__name__)

Flush = Callable[[Sequence[Any], dt.datetime], Sequence[Any]]
Handler = Callable[[dict, Callable, Callable], Awaitable[None]]

MAX_BATCH = 2000
_STOP = object()


class WriterUnavailable(Exception):
    """The batch could not be written (the database is down or refused it)."""


class WriterBusy(Exception):
    """More items wait to be written than the writer may hold; try again later."""


class BatchWriter:
    """Write items that arrive together in one transaction, in one thread."""

    def __init__(self, name: str, flush: Flush, max_pending: int | None = None) -> None:
        self.name = name
        self.flush = flush
        # Past this many waiting items, submit() refuses instead of queueing: a
        # flood must not grow the queue, and the memory it takes, without bound.
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"writer-{name}", daemon=True
        )
        self._thread.start()

    async def submit(self, item: Any) -> Any:
        """Queue item; return its result once the transaction holding it committed."""
        if self.max_pending is not None and self._queue.qsize() >= self.max_pending:
            raise WriterBusy(self.name)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((item, loop, future))
        return await future

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread and close its connection."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stopping = False
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stopping = True
                        break
                    batch.append(more)
                self._write(batch)
                if stopping:
                    return
        finally:
            connection.close()

    def _write(self, batch: list) -> None:
        outcomes = self._flush([item for item, _, _ in batch])
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_, loop, future), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:
                pass  # that loop has closed; nobody is waiting any more

    def _flush(self, items: list) -> list[tuple[bool, Any]]:
        """Write items in one transaction; return (ok, result or exception) for each."""
        try:
            return [(True, result) for result in self.flush(items, timezone.now())]
        except (OperationalError, InterfaceError) as exc:
            logger.warning("%s writer: database unavailable: %s", self.name, exc)
            # Drop the broken connection; the next batch opens a new one.
            connection.close()
            return [(False, WriterUnavailable(str(exc)))] * len(items)
        except Exception as exc:
            if len(items) > 1:
                # One bad item must not fail the others that arrived with it.
                return [outcome for item in items for outcome in self._flush([item])]
            if not (isinstance(exc, jsonio.PayloadError) or getattr(exc, "refusal", 0)):
                logger.exception("%s writer: could not write %r", self.name, items[0])
            return [(False, exc)]


def _settle(settled: list) -> None:
    for future, (ok, value) in settled:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


_writers: dict[str, BatchWriter] = {}
_writers_lock = threading.Lock()


def get_writer(name: str, flush: Flush, max_pending: int | None = None) -> BatchWriter:
    """Return the process's writer of that name, starting it on first use."""
    writer = _writers.get(name)
    if writer is None:
        with _writers_lock:
            writer = _writers.get(name)
            if writer is None:
                writer = _writers[name] = BatchWriter(name, flush, max_pending)
    return writer


def stop_writers() -> None:
    """Drain and stop every writer (server shutdown, end of a test)."""
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.stop()


# --- minimal HTTP for lean handlers -------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Sequence = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


async def send_json(
    send: Callable, status: int, body: Any, headers: Sequence = ()
) -> None:
    payload = jsonio.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                # What Django's SecurityMiddleware adds to the other lane's answers.
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"same-origin"),
                (b"x-frame-options", b"DENY"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(scope: dict, receive: Callable) -> bytes:
    """Return the request body, or raise HttpError 413 past the configured limit."""
    limit = body_limit(scope["path"])
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HttpError(413, too_large_message(scope["path"]))
        except ValueError:
            raise HttpError(400, "Content-Length is not a number") from None
    chunks, size = [], 0
    deadline = settings.SOLLOL_BODY_TIMEOUT
    try:
        # A client that promises a body and sends it a byte at a time would
        # otherwise hold its connection, and a place in the server, for ever.
        async with asyncio.timeout(deadline):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise HttpError(400, "client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise HttpError(413, too_large_message(scope["path"]))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise HttpError(
            408, f"the request body did not arrive within {deadline:g} s"
        ) from None


def check_write(scope: dict) -> None:
    """Refuse a write from a foreign Host or without a valid token, as Django would."""
    given = header(scope, b"host")
    if given is None:  # HTTP/1.0: the address it came to, as Django does
        given = (scope.get("server") or ("",))[0] or ""
    host, _ = split_domain_port(given)  # also as Django: "localhost." is localhost
    if not host or not validate_host(host, settings.ALLOWED_HOSTS):
        raise HttpError(400, f"host {host!r} is not allowed")
    refusal = check_bearer(header(scope, b"authorization"))
    if refusal is not None:
        status, message = refusal
        challenge = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        raise HttpError(status, message, challenge)


def lean_post(
    handler: Callable[[bytes, dict], Awaitable[tuple[int, Any]]],
    *,
    reads_in_django=False,
) -> Handler:
    """Wrap handler(body, scope) -> (status, json) into an ASGI app for one POST.

    With reads_in_django, LeanRouter passes the path's other methods (a GET listing
    what was posted) on to Django; otherwise they get 405 here.
    """

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        try:
            if scope["method"] != "POST":
                raise HttpError(405, "use POST", [(b"allow", b"POST")])
            check_write(scope)
            status, body = await handler(await read_body(scope, receive), scope)
        except HttpError as exc:
            await send_json(send, exc.status, {"error": exc.message}, exc.headers)
        except jsonio.PayloadError as exc:
            await send_json(send, 400, {"error": str(exc)})
        except WriterUnavailable:
            await send_json(
                send, 503, {"error": "the database is unavailable; try again shortly"}
            )
        except WriterBusy:
            await send_json(
                send,
                503,
                {"error": "too many writes are waiting; try again shortly"},
                [(b"retry-after", b"1")],
            )
        except Exception:
            logger.exception("%s %s failed", scope["method"], scope["path"])
            await send_json(send, 500, {"error": "internal error"})
        else:
            await send_json(send, status, body)

    app.reads_in_django = reads_in_django
    return app


def same_origin(origin: str, host: str | None) -> bool:
    """Whether a browser's Origin is the site it sends to (or a trusted origin)."""
    if origin in settings.SOLLOL_TRUSTED_ORIGINS:
        return True
    scheme, _, rest = origin.lower().partition("://")
    return bool(host) and scheme in ("http", "https") and rest == host.lower()


READS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_PREFIXES = ("/api/", "/v1/")
LOGIN_PATH = "/admin/login/"


async def too_many(send: Callable, wait: float, what: str) -> None:
    """Answer 429: what was too many, and when to try again."""
    await send_json(
        send,
        429,
        {"error": f"{what}; try again in {wait:.1f} s", "retry_after": round(wait, 3)},
        [(b"retry-after", ratelimit.retry_after(wait).encode())],
    )


class LeanRouter:
    """Serve the lean routes by exact path; pass everything else on to Django."""

    def __init__(self, routes: dict[str, Handler], fallback) -> None:
        self.routes = {path.rstrip("/"): app for path, app in routes.items()}
        self.fallback = fallback

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        client = (scope.get("client") or ("?",))[0]
        if scope["method"] not in READS and scope["path"].startswith(WRITE_PREFIXES):
            origin = header(scope, b"origin")
            if origin is not None and not same_origin(origin, header(scope, b"host")):
                # A web page the operator visits could otherwise send "simple"
                # (text/plain) POSTs here that no browser stops; the dashboard's
                # clients are scripts and send no Origin.
                await send_json(
                    send,
                    403,
                    {"error": f"cross-site write from {origin[:200]} refused"},
                )
                return
            if wait := ratelimit.write_wait(client):
                await too_many(send, wait, f"too many writes from {client}")
                return
        elif scope["method"] == "POST" and scope["path"] == LOGIN_PATH:
            if wait := ratelimit.login_wait(client):
                await too_many(send, wait, "too many login attempts")
                return
        handler = self.routes.get(scope["path"].rstrip("/"))
        if handler is not None and not (
            handler.reads_in_django and scope["method"] != "POST"
        ):
            await handler(scope, receive, send)
            return
        await self._to_django(scope, receive, send)

    async def _to_django(self, scope: dict, receive: Callable, send: Callable) -> None:
        # Django's ASGI handler spools any body to disk before it looks at a limit;
        # refuse oversized bodies here, before a byte is stored.
        if scope["method"] in READS:
            await self.fallback(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive)
        except HttpError as exc:
            await send_json(send, exc.status, {"error": exc.message})
            return
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        # The body is whole now: say how long it is. A chunked request has no
        # Content-Length, and DRF reads a body without one as empty.
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-length", b"transfer-encoding")
        ]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.fallback({**scope, "headers": headers}, replay, send)

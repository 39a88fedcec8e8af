"""Minimal HTTP for the lean lane: one POST handler as an ASGI app, JSON answers.

Hot ingest endpoints (heartbeats, reported requests, logs) are served before
Django's URL resolver (core.lean.router); this is all the HTTP they need: the
body within its size and time limits, the Host and token checks Django would make,
and every refusal as {"error": "..."} with its status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from core import jsonio, ratelimit
from core.lean.writer import WriterBusy, WriterUnavailable
from core.parsers import body_limit, too_large_message
from core.tokens import check_app_write, check_bearer

logger = logging.getLogger(__name__)

Handler = Callable[[dict, Callable, Callable], Awaitable[None]]


class Refusal(Exception):
    """A request refused before any handler ran: answered as ``{"error": message}``."""

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


async def read_body(scope: dict, receive: Callable, limit: int | None = None) -> bytes:
    """Return the request body, or raise a 413 Refusal past the limit (by default
    the configured one for the path)."""
    if limit is None:
        limit = body_limit(scope["path"])
        too_large = too_large_message(scope["path"])
    else:
        too_large = f"request body is larger than {limit} bytes"
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise Refusal(413, too_large)
        except ValueError:
            raise Refusal(400, "Content-Length is not a number") from None
    chunks, size = [], 0
    deadline = settings.SOLLOL_BODY_TIMEOUT
    try:
        # A client that promises a body and sends it a byte at a time would
        # otherwise hold its connection, and a place in the server, for ever.
        async with asyncio.timeout(deadline):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Refusal(400, "client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise Refusal(413, too_large)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise Refusal(
            408, f"the request body did not arrive within {deadline:g} s"
        ) from None


def check_write(scope: dict, *, app: bool = False) -> None:
    """Refuse a write from a foreign Host or without a valid token, as Django would.

    An application endpoint (app) takes the token as a Basic-auth password too,
    and none from SOLLOL_TRUSTED_NETWORKS (core.tokens.check_app_write)."""
    given = header(scope, b"host")
    if given is None:  # HTTP/1.0: the address it came to, as Django does
        given = (scope.get("server") or ("",))[0] or ""
    host, _ = split_domain_port(given)  # also as Django: "localhost." is localhost
    if not host or not validate_host(host, settings.ALLOWED_HOSTS):
        raise Refusal(400, f"host {host!r} is not allowed")
    authorization = header(scope, b"authorization")
    client = (scope.get("client") or (None,))[0]
    if app:
        refusal = check_app_write(authorization, client)
    else:
        refusal = check_bearer(authorization, client)
    if refusal is not None:
        if refusal.status == 429:
            raise limited((refusal.retry_after, refusal.message))
        challenge = [(b"www-authenticate", b"Bearer")] if refusal.status == 401 else []
        raise Refusal(refusal.status, refusal.message, challenge)


def lean_post(
    handler: Callable[[bytes, dict], Awaitable[tuple[int, Any]]],
    *,
    reads_in_django=False,
    app: bool = False,
) -> Handler:
    """Wrap handler(body, scope) -> (status, json) into an ASGI app for one POST.

    With reads_in_django, LeanRouter passes the path's other methods (a GET listing
    what was posted) on to Django; otherwise they get 405 here.
    """

    async def serve(scope: dict, receive: Callable, send: Callable) -> None:
        try:
            if scope["method"] != "POST":
                raise Refusal(405, "use POST", [(b"allow", b"POST")])
            check_write(scope, app=app)
            status, body = await handler(await read_body(scope, receive), scope)
        except Refusal as exc:
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

    serve.reads_in_django = reads_in_django
    return serve


def limited(refusal: tuple[float, str]) -> Refusal:
    """The 429 of a limit's refusal (core.ratelimit: the wait, and why)."""
    wait, why = refusal
    return Refusal(429, why, [(b"retry-after", ratelimit.retry_after(wait).encode())])


async def too_many(send: Callable, wait: float, what: str) -> None:
    """Answer 429: what was too many, and when to try again."""
    await send_json(
        send,
        429,
        {"error": f"{what}; try again in {wait:.1f} s", "retry_after": round(wait, 3)},
        [(b"retry-after", ratelimit.retry_after(wait).encode())],
    )

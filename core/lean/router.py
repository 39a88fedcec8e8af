"""The front door of the HTTP lane: lean routes by exact path, Django for the rest.

Write policy that holds for both lanes lives here too: cross-site writes are
refused, writes and sign-ins are rate limited, and bodies bound for Django are
read (and refused when oversized or slow) before Django spools them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings

from core import ratelimit
from core.lean.http import Handler, Refusal, header, read_body, send_json, too_many
from core.tokens import valid_bearer


def same_origin(origin: str, host: str | None) -> bool:
    """Whether a browser's Origin is the site it sends to (or a trusted origin)."""
    if origin in settings.SOLLOL_TRUSTED_ORIGINS:
        return True
    scheme, _, rest = origin.lower().partition("://")
    return bool(host) and scheme in ("http", "https") and rest == host.lower()


READS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_PREFIXES = ("/api/", "/v1/")
LOGIN_PATHS = frozenset({"/admin/login/", "/login/"})


class LeanRouter:
    """Serve the lean routes by exact path; pass everything else on to Django."""

    def __init__(self, routes: dict[str, Handler], fallback) -> None:
        """routes: exact paths, or a pattern with one {name} part (one path
        segment, as the handler reads it from the scope's path)."""
        self.routes = {
            path.rstrip("/"): app for path, app in routes.items() if "{" not in path
        }
        self.patterns = [
            (re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "/?"), app)
            for path, app in routes.items()
            if "{" in path
        ]
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
            # Per token when tokens are used (only a valid one: a made-up header
            # must not pick a bucket of its own), else per address.
            owner = valid_bearer(header(scope, b"authorization"))
            key = client if owner is None else f"token:{owner}"
            if wait := ratelimit.write_wait(key):
                who = client if owner is None else f"token {owner}"
                await too_many(send, wait, f"too many writes from {who}")
                return
        elif scope["method"] == "POST" and scope["path"] in LOGIN_PATHS:
            if wait := ratelimit.login_wait(client):
                await too_many(send, wait, "too many login attempts")
                return
        handler = self.routes.get(scope["path"].rstrip("/")) or self._matching(
            scope["path"]
        )
        if handler is not None and not (
            handler.reads_in_django and scope["method"] != "POST"
        ):
            await handler(scope, receive, send)
            return
        await self._to_django(scope, receive, send)

    def _matching(self, path: str) -> Handler | None:
        for pattern, handler in self.patterns:
            if pattern.fullmatch(path):
                return handler
        return None

    async def _to_django(self, scope: dict, receive: Callable, send: Callable) -> None:
        # Django's ASGI handler spools any body to disk before it looks at a limit;
        # refuse oversized bodies here, before a byte is stored.
        if scope["method"] in READS:
            await self.fallback(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive)
        except Refusal as exc:
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

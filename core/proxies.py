"""The client's address behind a reverse proxy, believed only from named proxies.

A proxy in front (deploy/nginx) connects from its own address and says whom it
serves in X-Forwarded-For (and the scheme in X-Forwarded-Proto). Anyone can write
those headers, so they are read only from the peers the operator names in
SOLLOL_TRUSTED_PROXIES; from any other peer they are ignored, and the connection's
own address is the client (a script on loopback cannot pick its own rate-limit
bucket, or pass for a remote client or a local one).

Of a chain "a, b, c" sent by a trusted proxy, the client is "c", the address that
proxy saw: what a client wrote there itself comes before it, and a client on the
proxy's own machine (whose address is the proxy's too) cannot pass for another by
writing one. `resolve` applies this to a scope once (the dashboard's
`ProxyHeaders`, and the gateway itself, which also runs on a port of its own),
whichever server runs them: servers run without their own proxy-header handling
(uvicorn's is off in `serve`; daphne runs without --proxy-headers).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

from django.conf import settings

# Set on a scope whose request carried X-Forwarded-For from a peer not trusted: a
# proxy the operator did not name may stand between the client and us.
UNTRUSTED_FORWARD = "sollol.forwarded_by_untrusted_peer"
RESOLVED = "sollol.client_resolved"  # resolve() has read this scope's headers


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def trusted(address: str) -> bool:
    """Whether address is one of the operator's proxies (SOLLOL_TRUSTED_PROXIES)."""
    networks = _networks(tuple(settings.SOLLOL_TRUSTED_PROXIES))
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded: str | None) -> str:
    """The client's address: peer, or the one the trusted proxy peer saw (the last
    of X-Forwarded-For)."""
    if not forwarded or not trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-1][:100] if hops else peer


class ProxyHeaders:
    """ASGI middleware: the scope's client (and scheme) as the proxy saw them."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        await self.app(resolve(scope), receive, send)


def resolve(scope: dict) -> dict:
    """Return scope with its client (and scheme) as a trusted proxy saw them, or
    marked UNTRUSTED_FORWARD; once: a resolved scope comes back as it is."""
    if scope.get(RESOLVED) or scope["type"] not in ("http", "websocket"):
        return scope
    if not scope.get("client"):
        return {**scope, RESOLVED: True}
    return {**_forwarded(scope), RESOLVED: True}


def _forwarded(scope: dict) -> dict:
    forwarded = proto = None
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            # Several headers are one list, in order.
            text = value.decode("latin-1")
            forwarded = text if forwarded is None else f"{forwarded}, {text}"
        elif name == b"x-forwarded-proto":
            proto = value.decode("latin-1").split(",")[0].strip().lower()
    if forwarded is None:
        return scope
    peer = scope["client"][0]
    if not trusted(peer):
        return {**scope, UNTRUSTED_FORWARD: True}
    scope = {**scope, "client": (client_address(peer, forwarded), 0)}
    if proto in ("http", "https"):
        secure = proto == "https"
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = proto
    return scope

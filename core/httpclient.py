"""The HTTP client for everything that asks nodes and clusters (aiohttp).

The gateway forwards requests with a client of its own (core/relay.py), which
shares this module's credentials and errors.

A `Client` is one aiohttp session for one far side (a node, a dashboard) and the
few GETs asked of it, then closed: its connections are kept alive between those
GETs and belong to no one else. bench/RESULTS.md ("One HTTP client", 2026-12-03)
measured it at 2x the CPU per probe of the hand-written readers it replaced and
httpx with one client per node at 8-9x; httpx with one pool for a thousand nodes
(the earlier trial) at 65x, which is what cost a whole core.

Every reply is read whole, up to a bound that also applies after decompression
(a gzip bomb stops at the bound, aiohttp inflates it piece by piece). Redirects
are not followed: the address was checked against the allow-list, its redirect
target was not. The caller bounds the time (one deadline around all its GETs,
`asyncio.timeout`); when it runs out aiohttp drops the connection in use.

Errors are `HttpError`s whose message is in words for the operator:
`Unreachable` (no connection: refused, no route, no such name, TLS refused),
`Disconnected` (the far side closed the connection before its reply ended),
`BadReply` (what came back is not an HTTP reply this client takes).
"""

from __future__ import annotations

import base64
import socket
import ssl
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.resolver import DefaultResolver
from yarl import URL

USER_AGENT = "sollol-dashboard"
# What aiohttp inflates with a bounded output per step; br and zstd would need
# optional packages, so they are not offered.
ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class Credential:
    """A Basic or Bearer credential sent as Authorization; shown only as ***."""

    scheme: Literal["basic", "bearer"]
    secret: str = field(repr=False)  # the password or the token
    user: str = ""

    def __post_init__(self) -> None:
        if self.scheme not in ("basic", "bearer"):
            raise ValueError(f"unknown credential scheme {self.scheme!r}")
        # A line break would let the value write headers of its own.
        if any(c in value for value in (self.user, self.secret) for c in "\r\n\0"):
            raise ValueError("a credential may not contain line breaks")
        if self.scheme == "basic" and ":" in self.user:
            raise ValueError("a Basic user name may not contain ':'")
        if self.scheme == "bearer" and (not self.secret or self.user):
            raise ValueError("a Bearer credential is one non-empty token")

    @classmethod
    def basic(cls, user: str, password: str) -> Credential:
        """Return a Basic credential (RFC 7617, UTF-8)."""
        return cls("basic", password, user)

    @classmethod
    def bearer(cls, token: str) -> Credential:
        """Return a Bearer credential (RFC 6750)."""
        return cls("bearer", token)

    def header(self) -> str:
        """Return the Authorization header's value."""
        if self.scheme == "basic":
            pair = f"{self.user}:{self.secret}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return f"Bearer {self.secret}"

    def stored(self) -> dict[str, str]:
        """Return the credential as a node row keeps it (the secret included)."""
        return {"scheme": self.scheme, "user": self.user, "secret": self.secret}

    @classmethod
    def from_stored(cls, stored: dict[str, str] | None) -> Credential | None:
        """Return the credential a node row keeps, or None."""
        if not stored:
            return None
        return cls(stored["scheme"], stored["secret"], stored.get("user", ""))

    @property
    def masked(self) -> str:
        """Return what may be shown: the scheme, never the secret."""
        return f"{self.scheme} ***"

    def __repr__(self) -> str:
        return f"Credential({self.masked})"

    __str__ = __repr__


def split_credential(url: str) -> tuple[str, Credential | None]:
    """Return url without its userinfo, and that userinfo as a Basic credential."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = parts._replace(netloc=hostport).geturl()
    return bare, Credential.basic(unquote(user), unquote(password))


class HttpError(Exception):
    """No usable reply; the message says why, in words for the operator."""


class Unreachable(HttpError):
    """No connection was made: refused, no route, no such name, TLS refused."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class Disconnected(HttpError):
    """The far side closed the connection before its reply was complete."""


class BadReply(HttpError):
    """What came back is not an HTTP reply this client takes (garbled, too large)."""


@dataclass(frozen=True)
class Reply:
    """One HTTP reply, its body read whole (and inflated)."""

    status: int
    body: bytes
    content_type: str = ""


class _PinnedResolver(AbstractResolver):
    """Resolve each pinned host to an address that was already checked for it.

    aiohttp then connects there while the Host header, the TLS server name and
    the certificate check stay the URL's (see network/allowlist.py). Hosts not
    pinned (trusted sources) are looked up as aiohttp would.
    """

    def __init__(self, pins: dict[str, str]) -> None:
        self.pins = pins
        self.fallback = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.pins.get(host)
        if address is None:
            return await self.fallback.resolve(host, port, family)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        await self.fallback.close()


class Pool:
    """One aiohttp session for the GETs of many servers: a whole probe cycle.

    This is how aiohttp means a session to be used, created once and shared:
    per probe, a session of its own cost a tenth more CPU (bench/RESULTS.md). The
    GETs of one client reuse one connection; its last GET asks the server to close
    it (`Client.get(last=True)`), so a thousand nodes leave no thousand idle
    sockets behind. Closing the pool closes what is left.
    """

    def __init__(
        self, *, connections: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.connections = connections
        self.ssl_context = ssl_context
        self.pins: dict[str, str] = {}
        self.session: aiohttp.ClientSession | None = None

    def pin(self, host: str, address: str) -> None:
        """Connect to address whenever host is asked for (an allow-listed address)."""
        self.pins[host] = address.strip("[]")

    async def __aenter__(self) -> Pool:
        connector = aiohttp.TCPConnector(
            limit=self.connections,
            resolver=_PinnedResolver(self.pins),
            use_dns_cache=False,  # every connection asks: pins change per cycle
            ssl=self.ssl_context if self.ssl_context is not None else True,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # the caller's deadline
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


class Client:
    """A few GETs to one server, over its own session or a shared Pool's.

    `async with Client(url) as client: reply = await client.get("/api/version")`.
    base_url may carry a path prefix (a dashboard behind a proxy at /ray/) and
    userinfo (user:password@, sent as Basic unless a credential is given).
    connect_to is an address already checked for base_url's host: connect there,
    keep the Host header and TLS name of the URL. Without a pool the client has
    a session of its own, closed with it; connections bounds its GETs in flight
    at once, more wait for a free connection.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_body: int,
        connect_to: str | None = None,
        credential: Credential | None = None,
        connections: int = 1,
        ssl_context: ssl.SSLContext | None = None,
        pool: Pool | None = None,
    ) -> None:
        bare, from_url = split_credential(base_url)
        parts = urlsplit(bare)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {bare}")
        self.base = bare.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.max_body = max_body
        self.connect_to = connect_to
        self.credential = credential or from_url
        self.pool = pool or Pool(connections=connections, ssl_context=ssl_context)
        self._owns_pool = pool is None
        self._headers = (
            {"Authorization": self.credential.header()} if self.credential else {}
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        if self._owns_pool:
            await self.pool.__aenter__()
        if self.connect_to:
            self.pool.pin(self.host, self.connect_to)
        self._session = self.pool.session
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's own session (a shared pool stays open)."""
        self._session = None
        if self._owns_pool:
            await self.pool.__aexit__(None, None, None)

    async def get(
        self, path: str, *, max_body: int | None = None, last: bool = False
    ) -> Reply:
        """Return the reply to GET path (with its query); raise HttpError.

        last: this client asks nothing more, so the server may close the
        connection after its reply (on a shared pool, no idle socket stays).
        """
        assert self._session is not None, "use Client in `async with`"
        limit = self.max_body if max_body is None else max_body
        url = URL(self.base + path, encoded=True)
        headers = {**self._headers, "Connection": "close"} if last else self._headers
        try:
            async with self._session.get(
                url, allow_redirects=False, headers=headers
            ) as response:
                length = response.content_length
                if length is not None and length > limit:
                    raise BadReply(f"a reply of {length} bytes is over {limit}")
                body = bytearray()
                while chunk := await response.content.readany():
                    body += chunk
                    if len(body) > limit:
                        raise BadReply(f"the reply is over {limit} bytes")
                return Reply(response.status, bytes(body), response.content_type)
        except aiohttp.ClientConnectorError as exc:
            raise _unreachable(exc, self.host, self.port) from None
        except aiohttp.ServerDisconnectedError as exc:
            # Its message is the reply's head when part of one came, else a text.
            if isinstance(exc.message, str):
                raise Disconnected("closed the connection without a reply") from None
            raise Disconnected("closed the connection mid-reply") from None
        except aiohttp.ClientPayloadError as exc:
            if isinstance(exc.__cause__, ContentEncodingError):
                raise BadReply("the compressed body cannot be inflated") from None
            raise Disconnected("closed the connection mid-reply") from None
        except aiohttp.ClientError as exc:
            raise _other_error(exc) from None


def _unreachable(
    exc: aiohttp.ClientConnectorError, host: str, port: int
) -> Unreachable:
    where = f"{host}:{port}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return Unreachable(f"{where}: TLS certificate refused: {exc.certificate_error}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Unreachable(f"cannot resolve {host}: {exc.os_error}")
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError):
        return Unreachable(f"cannot connect to {where}: refused", refused=True)
    reason = os_error.strerror or str(os_error) or type(os_error).__name__
    return Unreachable(f"cannot connect to {where}: {reason}")


def _other_error(exc: aiohttp.ClientError) -> HttpError:
    """Say in words what went wrong once a connection was made."""
    if isinstance(exc, aiohttp.ClientResponseError):  # the parser's verdict
        verdict = " ".join(str(exc.message).split())  # it spans lines
        return BadReply(f"not an HTTP reply: {verdict}"[:200])
    if isinstance(exc, aiohttp.ClientOSError):
        return Disconnected(
            f"broke the connection: {exc.strerror or type(exc).__name__}"
        )
    return BadReply(f"{type(exc).__name__}: {exc}"[:200])

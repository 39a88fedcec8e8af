"""The only code that talks to Ollama nodes (HTTP); RPC backends are in network.rpc."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core import jsonio
from core.jsonio import storable


@dataclass(frozen=True)
class NodeProbe:
    """What one probe of an Ollama node found."""

    ok: bool  # the node answered /api/version and /api/ps with 200
    answered: bool  # it answered at all (an HTTP error is still an answer)
    latency_ms: float | None = None  # of GET /api/version
    version: str = ""
    loaded_models: list[dict[str, Any]] | None = None  # None: not read this time
    disk_models: list[dict[str, Any]] | None = None
    error: str = ""


LOADED_FIELDS = ("name", "model", "size", "size_vram", "digest", "expires_at")
DISK_FIELDS = ("name", "model", "size", "digest", "modified_at")
DETAIL_FIELDS = ("family", "parameter_size", "quantization_level", "format")
MAX_BODY = 4 * 1024 * 1024  # a node with hundreds of models on disk stays well under


def _model(entry: Any, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """Keep the fields the dashboard shows, with the types Ollama documents."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return None
    model = {
        key: storable(value) if isinstance(value, str) else value
        for key in fields
        if isinstance(value := entry.get(key), str | int)
        and not isinstance(value, bool)
    }
    if isinstance(entry.get("context_length"), int):
        model["context_length"] = entry["context_length"]
    details = entry.get("details")
    if isinstance(details, dict):
        model["details"] = {
            key: storable(details[key])
            for key in DETAIL_FIELDS
            if isinstance(details.get(key), str)
        }
    return model


class _HttpError(Exception):
    """The node's reply is not HTTP/1.1 as this client reads it."""


class NodeConnection:
    """One keep-alive HTTP/1.1 connection to a node, for the GETs of one probe.

    A general HTTP client keeps a pool across hosts; with a thousand nodes its
    per-request bookkeeping cost more than the probing itself (bench/RESULTS.md).
    A probe needs three GETs to one host, so it needs one connection and no pool.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host_header: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.host_header = host_header
        self.spent = False  # the server closed it after its last reply
        self.reopen: Callable[[], Awaitable[NodeConnection]] | None = None

    @classmethod
    async def open(cls, url: str, connect_to: str | None = None) -> NodeConnection:
        """Connect to url's host, or to connect_to, an address already checked for it
        (the Host header and TLS name stay the URL's)."""
        parts = urlsplit(url)
        context = ssl.create_default_context() if parts.scheme == "https" else None
        reader, writer = await asyncio.open_connection(
            connect_to or parts.hostname,
            parts.port,
            ssl=context,
            server_hostname=parts.hostname if context and connect_to else None,
            limit=MAX_BODY,
        )
        connection = cls(reader, writer, parts.netloc)
        connection.reopen = lambda: cls.open(url, connect_to)
        return connection

    async def get(self, path: str) -> tuple[int, bytes]:
        """Return the status and body of GET path."""
        if self.spent:  # the last reply ended with the connection: a new one
            self.close()
            fresh = await self.reopen()
            self.reader, self.writer, self.spent = fresh.reader, fresh.writer, False
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            f"User-Agent: sollol-dashboard\r\nAccept: application/json\r\n\r\n".encode()
        )
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise _HttpError(f"not an HTTP reply: {status_line[:60]!r}")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(rest[:3])
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_BODY:
                raise _HttpError(f"a reply of {length} bytes is too large")
            body = await self.reader.readexactly(length)
        elif status in (204, 304) or status < 200:
            body = b""
        else:
            # Neither: the body ends with the connection (HTTP/1.1, 6.3), as some
            # proxies in front of a node answer.
            body = await self._until_closed()
            self.spent = True
        return status, body

    async def _until_closed(self) -> bytes:
        body = bytearray()
        while chunk := await self.reader.read(65536):
            body += chunk
            if len(body) > MAX_BODY:
                raise _HttpError("a reply is too large")
        return bytes(body)

    async def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers from Ollama
                return bytes(body)
            body += await self.reader.readexactly(size)
            if len(body) > MAX_BODY:
                raise _HttpError("a chunked reply is too large")
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.writer.close()


def _json(body: bytes) -> Any:
    # A node's 1e400 or NaN would not be storable as JSON by PostgreSQL.
    return jsonio.parse(body)


def _models(body: bytes, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    parsed = _json(body)
    entries = parsed.get("models") if isinstance(parsed, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the reply has no models list")
    return [m for m in (_model(e, fields) for e in entries) if m is not None]


async def probe_node(
    url: str, *, timeout: float, with_tags: bool, connect_to: str | None = None
) -> NodeProbe:
    """Probe one node: /api/version, /api/ps and, when asked, /api/tags.

    The whole probe shares one deadline, so a node that hangs costs one timeout.
    """
    started = time.perf_counter()
    connection = None
    try:
        async with asyncio.timeout(timeout):
            connection = await NodeConnection.open(url, connect_to)
            status, body = await connection.get("/api/version")
            latency_ms = (time.perf_counter() - started) * 1000
            if status != 200:
                return NodeProbe(
                    ok=False,
                    answered=True,
                    latency_ms=latency_ms,
                    error=f"/api/version answered HTTP {status}",
                )
            version = _json(body)
            if not isinstance(version, dict) or not isinstance(
                version.get("version"), str
            ):
                return NodeProbe(
                    ok=False,
                    answered=True,
                    latency_ms=latency_ms,
                    error="/api/version did not answer like Ollama",
                )
            status, body = await connection.get("/api/ps")
            if status != 200:
                return NodeProbe(
                    ok=False,
                    answered=True,
                    latency_ms=latency_ms,
                    version=storable(version["version"])[:64],
                    error=f"/api/ps answered HTTP {status}",
                )
            loaded = _models(body, LOADED_FIELDS)
            disk = None
            if with_tags:
                status, body = await connection.get("/api/tags")
                if status == 200:
                    disk = _models(body, DISK_FIELDS)
    except TimeoutError:
        return NodeProbe(ok=False, answered=False, error=f"no answer within {timeout}s")
    except ConnectionRefusedError:
        return NodeProbe(ok=False, answered=False, error="connection refused")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return NodeProbe(ok=False, answered=False, error=_describe(exc))
    except (ValueError, _HttpError) as exc:  # JSON or HTTP that Ollama does not send
        return NodeProbe(
            ok=False, answered=True, error=storable(f"unexpected reply: {exc}")[:300]
        )
    finally:
        if connection is not None:
            connection.close()
    return NodeProbe(
        ok=True,
        answered=True,
        latency_ms=latency_ms,
        version=storable(version["version"])[:64],
        loaded_models=loaded,
        disk_models=disk,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the node closed the connection mid-reply"
    return f"{type(exc).__name__}: {exc}"[:300]

"""The only code that talks to Ollama nodes (HTTP); RPC backends are in network.rpc."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


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
    extra: dict[str, Any] = field(default_factory=dict)


LOADED_FIELDS = ("name", "model", "size", "size_vram", "digest", "expires_at")
DISK_FIELDS = ("name", "model", "size", "digest", "modified_at")
DETAIL_FIELDS = ("family", "parameter_size", "quantization_level", "format")


def _model(entry: Any, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """Keep the fields the dashboard shows, with the types Ollama documents."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return None
    model = {
        key: entry[key]
        for key in fields
        if isinstance(entry.get(key), str | int) and not isinstance(entry[key], bool)
    }
    if isinstance(entry.get("context_length"), int):
        model["context_length"] = entry["context_length"]
    details = entry.get("details")
    if isinstance(details, dict):
        model["details"] = {
            key: details[key]
            for key in DETAIL_FIELDS
            if isinstance(details.get(key), str)
        }
    return model


def _models(response: httpx.Response, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    body = response.json()
    entries = body.get("models") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the reply has no models list")
    return [m for m in (_model(e, fields) for e in entries) if m is not None]


async def probe_node(
    client: httpx.AsyncClient, url: str, *, timeout: float, with_tags: bool
) -> NodeProbe:
    """Probe one node: /api/version, /api/ps and, when asked, /api/tags.

    The whole probe shares one deadline, so a node that hangs costs one timeout.
    """
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            version = await client.get(f"{url}/api/version")
            latency_ms = (time.perf_counter() - started) * 1000
            if version.status_code != 200:
                return NodeProbe(
                    ok=False,
                    answered=True,
                    latency_ms=latency_ms,
                    error=f"/api/version answered HTTP {version.status_code}",
                )
            body = version.json()
            if not isinstance(body, dict) or not isinstance(body.get("version"), str):
                return NodeProbe(
                    ok=False,
                    answered=True,
                    latency_ms=latency_ms,
                    error="/api/version did not answer like Ollama",
                )
            ps = await client.get(f"{url}/api/ps")
            if ps.status_code != 200:
                return NodeProbe(
                    ok=False,
                    answered=True,
                    latency_ms=latency_ms,
                    version=body["version"],
                    error=f"/api/ps answered HTTP {ps.status_code}",
                )
            loaded = _models(ps, LOADED_FIELDS)
            disk = None
            if with_tags:
                tags = await client.get(f"{url}/api/tags")
                if tags.status_code == 200:
                    disk = _models(tags, DISK_FIELDS)
    except TimeoutError:
        return NodeProbe(ok=False, answered=False, error=f"no answer within {timeout}s")
    except httpx.HTTPError as exc:
        return NodeProbe(ok=False, answered=False, error=_describe(exc))
    except ValueError as exc:  # JSON that is not what Ollama sends
        return NodeProbe(
            ok=False, answered=True, error=f"unexpected reply: {exc}"[:300]
        )
    return NodeProbe(
        ok=True,
        answered=True,
        latency_ms=latency_ms,
        version=body["version"],
        loaded_models=loaded,
        disk_models=disk,
    )


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:300]


def node_client(concurrency: int) -> httpx.AsyncClient:
    """Return an HTTP client for probing: no proxies, no redirects, bounded pool."""
    return httpx.AsyncClient(
        trust_env=False,  # an operator's HTTP_PROXY must not route LAN probes away
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency
        ),
        headers={"User-Agent": "sollol-dashboard"},
    )

"""The only code that asks nodes (over core.httpclient): Ollama's API here, other
kinds of server through network.servers; RPC backends are network.rpc."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from core import httpclient, jsonio
from core.httpclient import Credential
from core.jsonio import storable
from network import servers


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
    unauthorized: bool = False  # it answered 401 or 403: credentials missing/refused
    # Its loaded models were asked for and not read (/api/ps answered an error):
    # what it held before is no longer known to be what it holds.
    models_failed: bool = False
    # Servers other than Ollama (network.servers): gauges of their work, and
    # their counters (None: not read this time).
    serving: dict[str, Any] | None = None
    counters: dict[str, float] | None = None
    kind: str = ""  # what a node of no known kind turned out to be
    # Its GPU exporter's reading (network.gpus), None when not read; why not.
    gpus: list[dict[str, Any]] | None = None
    gpu_error: str = ""


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
    url: str,
    *,
    timeout: float,
    with_tags: bool,
    connect_to: str | None = None,
    credential: Credential | None = None,
    pool: httpclient.Pool | None = None,
    kind: str = "ollama",
) -> NodeProbe:
    """Probe one node: /api/version, /api/ps and, when asked, /api/tags; a node
    of another kind as network.servers reads it.

    The whole probe shares one deadline, so a node that hangs costs one timeout.
    connect_to is an address already checked for url's host (the Host header and
    TLS name stay the URL's); credential (or the URL's user:password@) goes with
    every GET. A probe cycle passes its pool (one session for every node).
    """
    try:
        client = httpclient.Client(
            url,
            max_body=MAX_BODY,
            connect_to=connect_to,
            credential=credential,
            pool=pool,
        )
    except ValueError as exc:  # not an http(s) URL: nothing was asked
        return NodeProbe(ok=False, answered=False, error=storable(str(exc))[:300])
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout), client:
            detected = ""
            if not kind:
                detected = await servers.detect_kind(client) or ""
                if not detected:
                    return NodeProbe(
                        ok=False,
                        answered=True,
                        error="answers neither as Ollama nor as an "
                        "OpenAI-compatible server (/v1/models, /api/version)",
                    )
                kind = detected
            if kind != "ollama":
                # What it serves and is (its models, build) is read when its
                # tags are due, or when it was only now known; its work always.
                full = with_tags or bool(detected)
                found = await _probe_server(client, kind, full=full)
                return dataclasses.replace(found, kind=detected)
            reply = await client.get("/api/version")
            latency_ms = (time.perf_counter() - started) * 1000
            if reply.status != 200:
                return _refusal(
                    "/api/version", reply.status, latency_ms, client.credential
                )
            version = _json(reply.body)
            if not isinstance(version, dict) or not isinstance(
                version.get("version"), str
            ):
                return NodeProbe(
                    ok=False,
                    answered=True,
                    latency_ms=latency_ms,
                    error="/api/version did not answer like Ollama",
                )
            version_text = storable(version["version"])[:64]
            reply = await client.get("/api/ps", last=not with_tags)
            if reply.status != 200:
                refusal = _refusal(
                    "/api/ps", reply.status, latency_ms, client.credential
                )
                return dataclasses.replace(
                    refusal, version=version_text, models_failed=True
                )
            loaded = _models(reply.body, LOADED_FIELDS)
            disk = None
            if with_tags:
                reply = await client.get("/api/tags", last=True)
                if reply.status == 200:
                    disk = _models(reply.body, DISK_FIELDS)
    except TimeoutError:
        # Rounded: the cycle passes what is left of its budget (0.9999981…).
        error = f"no answer within {round(timeout, 2)}s"
        return NodeProbe(ok=False, answered=False, error=error)
    except httpclient.Unreachable as exc:
        error = "connection refused" if exc.refused else str(exc)
        return NodeProbe(ok=False, answered=False, error=storable(error)[:300])
    except httpclient.Disconnected as exc:
        return NodeProbe(ok=False, answered=False, error=f"the node {exc}"[:300])
    except (ValueError, httpclient.BadReply) as exc:  # what Ollama does not send
        return NodeProbe(
            ok=False, answered=True, error=storable(f"unexpected reply: {exc}")[:300]
        )
    return NodeProbe(
        ok=True,
        answered=True,
        latency_ms=latency_ms,
        version=version_text,
        loaded_models=loaded,
        disk_models=disk,
        kind=detected,
    )


async def _probe_server(
    client: httpclient.Client, kind: str, *, full: bool
) -> NodeProbe:
    try:
        latency_ms, found = await servers.read_server(client, kind, full=full)
    except servers.NotServing as refused:
        if refused.status in (401, 403):
            return _refusal(
                refused.path, refused.status, refused.latency_ms, client.credential
            )
        return NodeProbe(
            ok=False,
            answered=True,
            latency_ms=refused.latency_ms,
            error=str(refused)[:300],
        )
    return NodeProbe(
        ok=True,
        answered=True,
        latency_ms=latency_ms,
        version=found["version"],
        loaded_models=found["models"],
        disk_models=found["models"],
        error=found["error"],
        serving=found["serving"],
        counters=found["counters"],
    )


def _refusal(
    path: str, status: int, latency_ms: float, credential: Credential | None
) -> NodeProbe:
    """Return the probe of a node that answered path with an HTTP error."""
    if status not in (401, 403):
        error = f"{path} answered HTTP {status}"
    elif credential is None and status == 401:
        error = f"{path} answered HTTP 401: needs credentials"
    elif credential is None:
        # Ollama's own guard answers 403 to a Host it does not serve, as a proxy
        # that passes on its upstream's name makes it do: say both.
        error = (
            f"{path} answered HTTP 403: access denied without credentials "
            "(or a proxy sent Ollama a Host name it does not serve)"
        )
    else:
        error = f"{path}: the credentials were refused (HTTP {status})"
    return NodeProbe(
        ok=False,
        answered=True,
        latency_ms=latency_ms,
        unauthorized=status in (401, 403),
        error=error,
    )

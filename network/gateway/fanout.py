"""The fleet's lists: /api/tags, /api/ps and /v1/models asked of every usable node.

Each model appears once, as the first node that has it describes it; in Ollama's
lists with the addresses of every node that has it in an extra field, `nodes`
(ollama-python ignores fields it does not know; the OpenAI SDK keeps them on its
objects, so /v1/models stays exactly OpenAI's shape). The order is Ollama's:
newest first. A node that does
not answer in time is left out of the list, not waited for; a list is kept for a
second, so a page that asks often does not ask the whole fleet each time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Callable

from core.httpclient import Credential, HttpError
from core.jsonio import go_json
from core.relay import Relay
from network.gateway.routing import NodeView

PATHS = {"tags": "/api/tags", "ps": "/api/ps", "v1/models": "/v1/models"}
MAX_BODY = 4 * 1024 * 1024
TIMEOUT = 2.0
CONCURRENCY = 64
FRESH_FOR = 1.0

_cache: dict[tuple[str, tuple[str, ...]], tuple[float, bytes]] = {}


async def listing(relay: Relay, name: str, nodes: list[NodeView]) -> bytes:
    """Return the fleet's answer to one list, as one node's would look."""
    key = (name, tuple(sorted(n.address for n in nodes)))
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < FRESH_FOR:
        return cached[1]
    limit = asyncio.Semaphore(CONCURRENCY)

    async def ask(node: NodeView) -> tuple[NodeView, object]:
        async with limit:
            return node, await _get_json(relay, node, PATHS[name])

    answers = await asyncio.gather(*(ask(node) for node in nodes))
    if name == "v1/models":
        data = _merge(
            answers, items="data", name="id", newest=_created, with_nodes=False
        )
        body = go_json({"object": "list", "data": data})
    else:
        field = "modified_at" if name == "tags" else "expires_at"
        models = _merge(answers, newest=lambda entry: _when(entry.get(field)))
        body = go_json({"models": models})
    _cache.clear()  # one entry a list is all that is ever worth keeping
    _cache[key] = (time.monotonic(), body)
    return body


async def _get_json(relay: Relay, node: NodeView, path: str) -> object:
    headers = {"Accept": "application/json"}
    credential = Credential.from_stored(node.credential)
    if credential is not None:
        headers["Authorization"] = credential.header()
    try:
        async with asyncio.timeout(TIMEOUT):
            upstream = await relay.open(
                "GET",
                node.url,
                path,
                body=b"",
                headers=headers,
                first_byte_timeout=TIMEOUT,
            )
            try:
                if upstream.status != 200:
                    return None
                body = bytearray()
                async for data, _ in upstream.chunks():
                    body += data
                    if len(body) > MAX_BODY:
                        return None
            finally:
                upstream.close()
        return json.loads(body)
    except (HttpError, TimeoutError, ValueError):
        return None


def _merge(
    answers: list[tuple[NodeView, object]],
    *,
    items: str = "models",
    name: str = "name",
    newest: Callable[[dict], object],
    with_nodes: bool = True,
) -> list[dict]:
    """Return each model once, with the nodes that have it, newest first."""
    merged: dict[str, dict] = {}
    for node, answer in answers:
        entries = answer.get(items) if isinstance(answer, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get(name), str):
                continue
            kept = merged.setdefault(entry[name], {**entry, "nodes": []})
            kept["nodes"].append(node.address)
    ordered = sorted(merged.values(), key=newest, reverse=True)
    if not with_nodes:
        for entry in ordered:
            del entry["nodes"]
    return ordered


def _created(entry: dict) -> int:
    return entry["created"] if isinstance(entry.get("created"), int) else 0


_FRACTION = re.compile(r"(\.\d{6})\d+")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _when(value: object) -> dt.datetime:
    """Return a Go time (nanoseconds, any offset) as a datetime; the epoch if not."""
    if not isinstance(value, str):
        return _EPOCH
    try:
        parsed = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        return _EPOCH
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    # Whole seconds, as Ollama compares them: one node's own order is kept.
    return parsed.replace(microsecond=0)

"""A bare ASGI app, no Django: the ceiling the dashboard's numbers are compared with.

It answers what the benchmark sends the dashboard, doing only what any server must:
POST /api/applications/heartbeat reads the body, parses the JSON and answers
{"status": "ok"}; GET /api/applications answers a static page of 100 applications
the size of the dashboard's; GET /api/network/nodes answers the bytes of the file
named by $BENCH_NODES_BODY (a node list the dashboard served, saved by
bench/network.py), 404 without it; GET /api/prometheus likewise the bytes of
$BENCH_PROMETHEUS_BODY (bench/prometheus.py); GET / answers 200 (the readiness probe).

    .venv/bin/uvicorn --loop uvloop --http httptools --no-access-log \
        --log-level warning bench.bare_asgi:app
    .venv/bin/daphne bench.bare_asgi:app
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

OK_BODY = json.dumps({"status": "ok"}).encode()
READY_BODY = b"ready\n"


def _page(size: int = 100) -> bytes:
    """Return a page shaped like GET /api/applications?limit=100 on the dashboard."""
    now = time.time()
    applications = [
        {
            "app_id": f"bench-{index}",
            "name": f"Bench App {index}",
            "router_type": "HybridRouter",
            "version": "1.4.2",
            "status": "active",
            "start_time": now - 60.0,
            "last_heartbeat": now - 1.0,
            "uptime_seconds": 60.0,
            "last_seen_seconds": 1.0,
            "metadata": {"env": "bench", "host": f"worker-{index % 1000:03d}"},
        }
        for index in range(size)
    ]
    return json.dumps(
        {
            "applications": applications,
            "total": 10_000,
            "active": 10_000,
            "stale": 0,
            "limit": size,
            "offset": 0,
        },
        separators=(",", ":"),
    ).encode()


PAGE_BODY = _page()
_NODES_FILE = os.environ.get("BENCH_NODES_BODY", "")
NODES_BODY = Path(_NODES_FILE).read_bytes() if _NODES_FILE else None
_PROMETHEUS_FILE = os.environ.get("BENCH_PROMETHEUS_BODY", "")
PROMETHEUS_BODY = Path(_PROMETHEUS_FILE).read_bytes() if _PROMETHEUS_FILE else None
PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


async def _respond(send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "POST" and path == "/api/applications/heartbeat":
        try:
            json.loads(await _read_body(receive))
        except ValueError:
            await _respond(send, 400, b'{"error":"bad json"}', b"application/json")
            return
        await _respond(send, 200, OK_BODY, b"application/json")
    elif method == "GET" and path == "/api/applications":
        await _respond(send, 200, PAGE_BODY, b"application/json")
    elif method == "GET" and path == "/api/network/nodes" and NODES_BODY is not None:
        await _respond(send, 200, NODES_BODY, b"application/json")
    elif method == "GET" and path == "/api/prometheus" and PROMETHEUS_BODY:
        await _respond(send, 200, PROMETHEUS_BODY, PROMETHEUS_TYPE)
    elif method == "GET" and path == "/":
        await _respond(send, 200, READY_BODY, b"text/plain")
    else:
        await _respond(send, 404, b'{"error":"not found"}', b"application/json")

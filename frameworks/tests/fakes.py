"""Small real HTTP servers on 127.0.0.1 standing in for a Ray or Dask dashboard.

They answer with the JSON a real Ray 2.60 / distributed 2026.8 gave (data/), or
with whatever a test puts in `routes`: an error, HTML, a refusal, silence.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"

RAY_FILES = {
    "/api/version": "ray_version.json",
    "/api/cluster_status": "ray_cluster_status.json",
    "/nodes?view=summary": "ray_nodes.json",
    "/api/v0/tasks/summarize": "ray_tasks.json",
    "/api/v0/actors/summarize": "ray_actors.json",
    "/api/jobs/": "ray_jobs.json",
}
DASK_FILES = {
    "/json/identity.json": "dask_identity.json",
    "/json/counts.json": "dask_counts.json",
}


def recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text())


class Reply:
    """One canned answer."""

    def __init__(
        self,
        status: int = 200,
        body: Any = b"",
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.delay = delay


def ray_gpu_routes() -> dict[str, Reply]:
    """Routes for FakeDashboard.ray: its head node has an NVIDIA A10G, in use."""
    nodes = recorded("ray_nodes.json")
    nodes["data"]["summary"][0]["gpus"] = [
        {
            "index": 0,
            "name": "NVIDIA A10G",
            "uuid": "GPU-1",
            "utilizationGpu": 87,
            "memoryUsed": 20480,
            "memoryTotal": 23028,
            "processesPids": [],
        }
    ]
    status = recorded("ray_cluster_status.json")
    usage = status["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
    usage["GPU"] = [1.0, 1.0]
    return {
        "/nodes?view=summary": Reply(body=nodes),
        "/api/cluster_status": Reply(body=status),
    }


class FakeDashboard:
    """A threaded HTTP server whose answers a test can change while it runs."""

    def __init__(self, routes: dict[str, Reply], host: str = "127.0.0.1") -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append((self.path, dict(self.headers)))
                reply = fake.routes.get(self.path) or Reply(
                    404, b"404: Not Found", "text/plain"
                )
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()

    @classmethod
    def ray(cls, overrides: dict[str, Reply] | None = None) -> FakeDashboard:
        """A Ray dashboard answering what a real Ray 2.60 answered."""
        return cls({**_recorded_routes(RAY_FILES), **(overrides or {})})

    @classmethod
    def dask(cls, overrides: dict[str, Reply] | None = None) -> FakeDashboard:
        """A Dask scheduler answering what a real distributed 2026.8 answered."""
        routes = _recorded_routes(DASK_FILES)
        routes["/health"] = Reply(body=b"ok", content_type="text/plain")
        return cls({**routes, **(overrides or {})})

    def refuse(self, status: int) -> None:
        """Answer every path with status, as an authenticating proxy would."""
        for path in list(self.routes):
            self.routes[path] = Reply(status, b"Unauthorized", "text/plain")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _recorded_routes(files: dict[str, str]) -> dict[str, Reply]:
    return {
        path: Reply(body=(DATA / name).read_bytes()) for path, name in files.items()
    }


class SilentServer:
    """Accepts connections and never answers: a hung dashboard."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def closed_port_url() -> str:
    """Return a loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

"""The whole SOLLOL dashboard alive on one machine, with nothing but the project.

    make demo                                      # the same as:
    PYTHONPATH=. .venv/bin/python examples/unified_dashboard_demo.py

It starts, all on loopback:

- a simulated fleet (simulator): Ollama nodes on 127.0.0.2, .3, .4 … and
  llama.cpp RPC backends beside them. The nodes answer Ollama's real HTTP API:
  models load when asked for, and unload again when their keep_alive runs out;
- a local Dask cluster (two worker processes) whose own dashboard the SOLLOL
  dashboard watches and links to;
- three applications, each reporting through `sollol.DashboardClient` as a real one
  would: requests to the nodes (`record_request`), log lines (`install_log_handler`)
  and traces (`client.trace`). One of them runs its batch on the Dask cluster;
- now and then (unless --no-faults) a node slows down, fails or dies for a while,
  and an RPC backend gets busy, so statuses change as they do on a real fleet;
- the dashboard itself: `UnifiedDashboard(...).run()`.

Its data lives in a temporary SQLite database (removed at exit; --data-dir keeps
it), never in the dashboard's own. Ctrl-C or SIGTERM stops everything; --seconds N
stops after N seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from simulator.ollama import (
    EMBEDDING_MODELS,
    GIB,
    Fleet,
    running_fleet,
)
from simulator.rpc import SimulatedRpcServer, running_rpc_server  # noqa: E402
from sollol import DashboardClient, UnifiedDashboard  # noqa: E402

FIRST_HOST = "127.0.0.2"
KEEP_ALIVES = ("20s", "45s", "2m", "5m")  # short ones make models unload soon
DOCUMENTS = (
    "How to rotate the API token of the dashboard",
    "Adding an RPC backend to a llama.cpp cluster",
    "Why a node shows as degraded",
    "Sizing VRAM for a 14B model at Q4_K_M",
    "Running Celery beat next to the dashboard",
    "Reading p95 latency per model",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the SOLLOL dashboard with a simulated fleet, applications "
        "and a local Dask cluster, all on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="dashboard address")
    parser.add_argument("--port", type=int, default=8080, help="dashboard port")
    parser.add_argument(
        "--seconds", type=float, default=None, help="stop after this many seconds"
    )
    parser.add_argument("--nodes", type=int, default=3, help="simulated Ollama nodes")
    parser.add_argument("--rpc", type=int, default=2, help="simulated RPC backends")
    parser.add_argument(
        "--ollama-port",
        type=int,
        default=11434,
        help="port of the simulated nodes (0: a free port each)",
    )
    parser.add_argument(
        "--rpc-port",
        type=int,
        default=50052,
        help="port of the simulated RPC backends (0: a free port each)",
    )
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--dask-dashboard-port", type=int, default=8787)
    parser.add_argument(
        "--no-dask", action="store_true", help="start no local Dask cluster"
    )
    parser.add_argument(
        "--ray",
        action="store_true",
        help="also start a local Ray (needs ray[default] installed)",
    )
    parser.add_argument("--ray-dashboard-port", type=int, default=8265)
    parser.add_argument(
        "--no-faults",
        action="store_true",
        help="keep every node and backend healthy (no slow-downs, errors or deaths)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the demo's database here (default: a temporary directory)",
    )
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.rpc < 0:
        parser.error("--nodes must be at least 1 and --rpc at least 0")
    if args.nodes + 1 > 250 or args.rpc + 1 > 250:
        parser.error("at most 249 nodes and backends (127.0.0.2 to 127.0.0.250)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a service manager, a test) unwinds like Ctrl-C, so that every
    # process and thread started below is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="sollol-demo-"))
    try:
        with contextlib.ExitStack() as stack:
            fleet = _start_fleet(stack, args)
            backends = _start_backends(stack, args)
            _configure_dashboard(args, data_dir, fleet, backends)
            dashboard = stack.enter_context(
                UnifiedDashboard(
                    dashboard_port=args.port,
                    dask_dashboard_port=args.dask_dashboard_port,
                    ray_dashboard_port=args.ray_dashboard_port,
                    enable_dask=not args.no_dask,
                    enable_ray=args.ray,
                    host=args.host,
                    dask_workers=args.dask_workers,
                    dask_threads_per_worker=1,
                )
            )
            url = f"http://{_connect_host(args.host)}:{args.port}"
            stop = threading.Event()
            threads = [
                _thread(
                    _run_applications,
                    url,
                    fleet,
                    backends,
                    dashboard.dask_scheduler_address,
                    stop,
                    name="applications",
                )
            ]
            if not args.no_faults:
                threads.append(_thread(_faults, fleet, backends, stop, name="faults"))
            # Stopped and joined first, before the clusters and fleet they use.
            stack.callback(_join, threads)
            stack.callback(stop.set)
            # By then the dashboard has stopped: the apps' failing last reports
            # and unregistrations are expected, not news for the console.
            stack.callback(logging.getLogger("sollol").setLevel, logging.ERROR)
            _announce(url, fleet, backends, data_dir, args)
            if args.seconds is not None:
                timer = threading.Timer(
                    args.seconds, os.kill, (os.getpid(), signal.SIGINT)
                )
                timer.daemon = True
                timer.start()
                stack.callback(timer.cancel)
            dashboard.run()
    except KeyboardInterrupt:
        pass  # stopped before the dashboard served: as clean as after
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print("Demo stopped.", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------- the fleet


def _start_fleet(stack: contextlib.ExitStack, args: argparse.Namespace) -> Fleet:
    """Start the simulated Ollama nodes; on free ports if the wanted one is taken."""
    try:
        fleet = stack.enter_context(
            running_fleet(args.nodes, base=FIRST_HOST, port=args.ollama_port, seed=7)
        )
    except OSError as exc:
        if args.ollama_port == 0:
            raise
        print(f"Port {args.ollama_port} is taken ({exc}); using free ports.")
        fleet = stack.enter_context(
            running_fleet(args.nodes, base=FIRST_HOST, port=0, seed=7)
        )
    # Real nodes differ in speed; so do these (every answer, probes too).
    for index, node in enumerate(fleet.nodes):
        node.set_delay((0.02, 0.08, 0.15, 0.05)[index % 4])
    return fleet


def _start_backends(
    stack: contextlib.ExitStack, args: argparse.Namespace
) -> list[SimulatedRpcServer]:
    """Start the simulated llama.cpp RPC backends, next to the first nodes."""
    backends = []
    for index in range(args.rpc):
        host = f"127.0.0.{2 + index}"
        total = (24, 16, 12, 8)[index % 4] * GIB
        devices = [(int(total * (0.9 - 0.1 * (index % 3))), total)]
        try:
            backend = stack.enter_context(
                running_rpc_server(host, args.rpc_port, devices=devices)
            )
        except OSError:
            if args.rpc_port == 0:
                raise
            backend = stack.enter_context(running_rpc_server(host, 0, devices=devices))
        backends.append(backend)
    return backends


def _configure_dashboard(
    args: argparse.Namespace,
    data_dir: Path,
    fleet: Fleet,
    backends: list[SimulatedRpcServer],
) -> None:
    """Point the dashboard at the demo's own database and fleet (before it starts)."""
    os.environ["SOLLOL_DATA_DIR"] = str(data_dir)
    # Never the operator's own database or Redis: everything here is made up.
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'demo.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    os.environ["SOLLOL_OLLAMA_NODES"] = ",".join(fleet.urls)
    os.environ["SOLLOL_RPC_BACKENDS"] = ",".join(b.address for b in backends)
    # Only the simulated fleet: not whatever runs on 127.0.0.1:11434 here.
    os.environ["SOLLOL_DISCOVER_LOCALHOST"] = "false"
    os.environ.setdefault("SOLLOL_PROBE_INTERVAL", "2")
    os.environ.setdefault("SOLLOL_RPC_SESSION_INTERVAL", "10")


def _announce(
    url: str,
    fleet: Fleet,
    backends: list[SimulatedRpcServer],
    data_dir: Path,
    args: argparse.Namespace,
) -> None:
    lines = [
        "",
        f"SOLLOL demo: open {url}/",
        f"  Ollama nodes (simulated): {', '.join(fleet.urls)}",
    ]
    if backends:
        addresses = ", ".join(b.address for b in backends)
        lines.append(f"  RPC backends (simulated): {addresses}")
    lines.append(
        "  Applications: Support Chatbot, Docs Search, Nightly Summarizer"
        + ("" if args.no_dask else " (on Dask)")
    )
    lines.append(f"  Data: {data_dir}" + ("" if args.data_dir else " (temporary)"))
    lines.append(
        f"  Stops after {args.seconds:g} s." if args.seconds else "  Ctrl-C to stop."
    )
    print("\n".join(lines) + "\n", flush=True)


# --------------------------------------------------------------- applications


class NodeCatalog:
    """What models each node has on disk, as a router would learn it: /api/tags."""

    def __init__(self, urls: list[str], refresh_after: float = 30.0) -> None:
        self.urls = urls
        self.refresh_after = refresh_after
        self._models: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def models(self, url: str) -> list[str]:
        with self._lock:
            fetched, names = self._models.get(url, (0.0, []))
        if time.monotonic() - fetched < self.refresh_after and names:
            return names
        try:
            reply = requests.get(f"{url}/api/tags", timeout=2)
            names = [model["name"] for model in reply.json()["models"]]
        except (requests.RequestException, ValueError, KeyError):
            return names  # keep the last known list while the node is down
        with self._lock:
            self._models[url] = (time.monotonic(), names)
        return names

    def pick(self, chooser: random.Random, embedding: bool) -> tuple[str, str] | None:
        """Return a (node URL, model) with a chat (or embedding) model on it."""
        urls = self.urls[:]
        chooser.shuffle(urls)
        for url in urls:
            fits = [
                name
                for name in self.models(url)
                if (name in EMBEDDING_MODELS) == embedding
            ]
            if fits:
                return url, chooser.choice(fits)
        return None


def ask_ollama(
    node_url: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """POST to a node's API; return what an app reports about the request.

    Module-level, so Dask can ship it to its workers.
    """
    started = time.perf_counter()
    result: dict[str, Any] = {
        "node": node_url.split("://", 1)[-1],
        "model": body.get("model", ""),
        "ok": False,
        "error": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "reply": None,
    }
    try:
        response = requests.post(
            f"{node_url}{path}", json=body, headers=headers or {}, timeout=timeout
        )
        payload = response.json()
        if response.ok:
            result["ok"] = True
            result["prompt_tokens"] = payload.get("prompt_eval_count")
            result["completion_tokens"] = payload.get("eval_count")
            result["reply"] = payload.get("response") or payload.get("message", {}).get(
                "content"
            )
            result["embeddings"] = payload.get("embeddings")
        else:
            result["error"] = f"HTTP {response.status_code}: {payload.get('error')}"
    except (requests.RequestException, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["latency_ms"] = (time.perf_counter() - started) * 1000
    return result


class DemoApplication:
    """One application using the fleet, reporting to the dashboard as it goes."""

    name = "app"
    router_type = "unknown"
    version = "1.0.0"
    pause = (0.5, 2.0)  # seconds between two jobs

    def __init__(
        self,
        dashboard_url: str,
        catalog: NodeCatalog,
        backends: list[str],
        stop: threading.Event,
        seed: int,
    ) -> None:
        self.catalog = catalog
        self.stop = stop
        self.chooser = random.Random(seed)
        self.jobs = 0
        self.failures = 0
        self.client = DashboardClient(
            app_name=self.name,
            router_type=self.router_type,
            version=self.version,
            dashboard_url=dashboard_url,
            # A router tells the dashboard the nodes it uses: discovery by app.
            metadata={"env": "demo", "nodes": catalog.urls, "rpc_backends": backends},
        )
        slug = self.name.lower().replace(" ", "_")
        self.log = logging.getLogger(f"demo.{slug}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False  # to the dashboard, not to this console
        self.client.install_log_handler(self.log)

    def run(self) -> None:
        self.log.info("%s %s starting", self.name, self.version)
        while not self.stop.is_set():
            try:
                self.job()
            except Exception:  # a demo app that dies shows nothing any more
                self.log.exception("job failed")
            self.jobs += 1
            if self.jobs % 5 == 0:
                self.client.update_metadata(
                    {"jobs_done": self.jobs, "failures": self.failures}
                )
            self.stop.wait(self.chooser.uniform(*self.pause))
        self.log.info("%s stopping after %d jobs", self.name, self.jobs)
        self.close()

    def close(self) -> None:
        # The dashboard may be gone already (it stops first): don't wait long.
        self.client.close(timeout=1.0)

    def job(self) -> None:
        raise NotImplementedError

    def report(self, result: dict[str, Any], what: str) -> None:
        """Record one request and log it, as a router does after each call."""
        self.client.record_request(
            node=result["node"],
            model=result["model"],
            latency_ms=round(result["latency_ms"], 1),
            ok=result["ok"],
            prompt_tokens=result["prompt_tokens"],
            completion_tokens=result["completion_tokens"],
            error=result["error"],
        )
        if result["ok"]:
            self.log.info(
                "%s by %s on %s in %.0f ms",
                what,
                result["model"],
                result["node"],
                result["latency_ms"],
            )
        else:
            self.failures += 1
            self.log.warning(
                "%s by %s on %s failed: %s",
                what,
                result["model"],
                result["node"],
                result["error"],
            )

    def call(self, path: str, node_url: str, body: dict[str, Any], what: str) -> dict:
        """Make one traced request to a node and report it."""
        with self.client.trace(
            f"ollama {path}", node=node_url, model=body["model"]
        ) as span:
            result = ask_ollama(node_url, path, body, self.client.tracer.inject({}))
            if not result["ok"]:
                span.set_status("error", result["error"])
        self.report(result, what)
        return result


class SupportChatbot(DemoApplication):
    """A chat front end: one /api/chat per user turn."""

    name = "Support Chatbot"
    router_type = "HybridRouter"
    version = "2.3.1"
    pause = (0.4, 1.5)

    def job(self) -> None:
        picked = self.catalog.pick(self.chooser, embedding=False)
        if picked is None:
            self.log.warning("no node with a chat model is reachable")
            return
        node_url, model = picked
        question = self.chooser.choice(DOCUMENTS)
        with self.client.trace("chat turn", user=f"user-{self.chooser.randint(1, 40)}"):
            self.call(
                "/api/chat",
                node_url,
                {
                    "model": model,
                    "messages": [{"role": "user", "content": question}],
                    "stream": False,
                    "keep_alive": self.chooser.choice(KEEP_ALIVES),
                },
                "chat reply",
            )


class DocsSearch(DemoApplication):
    """Retrieval-augmented answers: embed, rank locally, then generate."""

    name = "Docs Search"
    router_type = "OllamaPool"
    version = "1.4.0"
    pause = (1.0, 3.0)

    def job(self) -> None:
        embedder = self.catalog.pick(self.chooser, embedding=True)
        writer = self.catalog.pick(self.chooser, embedding=False)
        if embedder is None or writer is None:
            self.log.warning("no node with the models this app needs is reachable")
            return
        question = self.chooser.choice(DOCUMENTS)
        with self.client.trace("answer question", question=question) as root:
            node_url, model = embedder
            texts = [question, *DOCUMENTS]
            embedded = self.call(
                "/api/embed", node_url, {"model": model, "input": texts}, "embedding"
            )
            if not embedded["ok"]:
                root.set_status("error", "embedding failed")
                return
            with self.client.trace("rank documents", candidates=len(DOCUMENTS)):
                query, *documents = embedded["embeddings"]
                scores = [_cosine(query, vector) for vector in documents]
                best = DOCUMENTS[max(range(len(scores)), key=scores.__getitem__)]
            node_url, model = writer
            self.call(
                "/api/generate",
                node_url,
                {
                    "model": model,
                    "prompt": f"Answer from this page: {best}\n\nQ: {question}",
                    "stream": False,
                    "keep_alive": self.chooser.choice(KEEP_ALIVES),
                },
                "answer",
            )


class NightlySummarizer(DemoApplication):
    """A batch job: summaries of several documents at once, on the Dask cluster."""

    name = "Nightly Summarizer"
    router_type = "DaskBatch"
    version = "0.9.0"
    pause = (2.0, 5.0)

    def __init__(self, *args: Any, dask_address: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dask = None
        if dask_address is not None:
            from distributed import Client

            self.dask = Client(dask_address, timeout=20)
            self.client.update_metadata({"dask_scheduler": dask_address})

    def job(self) -> None:
        batch = self.chooser.sample(DOCUMENTS, k=3)
        calls = []
        for document in batch:
            picked = self.catalog.pick(self.chooser, embedding=False)
            if picked is not None:
                node_url, model = picked
                body = {
                    "model": model,
                    "prompt": f"Summarize: {document}",
                    "stream": False,
                    "keep_alive": self.chooser.choice(KEEP_ALIVES),
                }
                calls.append((node_url, "/api/generate", body))
        if not calls:
            self.log.warning("no node with a chat model is reachable")
            return
        where = "dask" if self.dask is not None else "threads"
        with self.client.trace("summarize batch", documents=len(calls), on=where):
            headers = self.client.tracer.inject({})
            if self.dask is not None:
                futures = [
                    self.dask.submit(ask_ollama, *call, headers, pure=False)
                    for call in calls
                ]
                results = self.dask.gather(futures)
            else:
                results = [ask_ollama(*call, headers) for call in calls]
        for result in results:
            self.report(result, "summary")

    def close(self) -> None:
        if self.dask is not None:
            with contextlib.suppress(Exception):
                self.dask.close(timeout=5)
        super().close()


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _run_applications(
    dashboard_url: str,
    fleet: Fleet,
    backends: list[SimulatedRpcServer],
    dask_address: str | None,
    stop: threading.Event,
) -> None:
    """Start the applications once the dashboard answers; stop them with `stop`."""
    while not stop.is_set():
        try:
            requests.get(f"{dashboard_url}/api/applications", timeout=1)
            break
        except requests.RequestException:
            stop.wait(0.25)
    if stop.is_set():
        return
    catalog = NodeCatalog(fleet.urls)
    addresses = [backend.address for backend in backends]
    apps: list[DemoApplication] = [
        SupportChatbot(dashboard_url, catalog, addresses, stop, seed=1),
        DocsSearch(dashboard_url, catalog, addresses, stop, seed=2),
        NightlySummarizer(
            dashboard_url, catalog, addresses, stop, seed=3, dask_address=dask_address
        ),
    ]
    threads = [_thread(app.run, name=app.name) for app in apps]
    stop.wait()
    _join(threads)


# --------------------------------------------------------------------- faults


def _faults(
    fleet: Fleet, backends: list[SimulatedRpcServer], stop: threading.Event
) -> None:
    """Now and then trouble one node or backend for a while, then heal it."""
    chooser = random.Random(11)
    if stop.wait(45):  # a healthy start first
        return
    while not stop.is_set():
        fault = chooser.choice(("slow", "error", "die", "busy"))
        if fault == "busy" and backends:
            backend = chooser.choice(backends)
            backend.attach()  # another client holds it
            stop.wait(chooser.uniform(15, 30))
            backend.detach()
        elif fault != "busy":
            node = chooser.choice(fleet.nodes)
            delay = node.delay
            if fault == "slow":
                node.set_delay(1.5)
            elif fault == "error":
                node.set_error(503)
            else:
                node.die()
            stop.wait(chooser.uniform(15, 30))
            node.heal()
            node.set_delay(delay)
        stop.wait(chooser.uniform(30, 60))


# ---------------------------------------------------------------------- helpers


def _thread(target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _join(threads: list[threading.Thread], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


if __name__ == "__main__":
    sys.exit(main())

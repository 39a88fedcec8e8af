"""Benchmark Ray and Dask collection and GET /api/{ray,dask}/metrics.

    .venv/bin/python bench/frameworks.py                  # 50 cycles, 500 GETs each
    .venv/bin/python bench/frameworks.py --cycles 10 --gets 100 --no-write

Targets (issue 5): collecting a live Ray and a live Dask cluster takes ≤ 500 ms a
cycle each; the API answers from the last snapshot in ≤ 20 ms (median).

A real Ray head (tests/clusters.py: a child process, 2 CPUs, token auth, everything
on 127.0.0.1, one CPU held by a task, one actor) and a real Dask cluster
(`distributed.cli.dask_scheduler` plus 2 `dask_worker` processes on 127.0.0.1,
one task running, batches of short tasks submitted all along) are started.
(1) This process runs the collectors `--cycles` times: Ray alone, Dask alone, and
both at once as the beat task does. (2) A fresh
`manage.py serve` (SQLite) collects both every 1 s; once it has a full history
(60 collections each), `--gets` sequential GETs of each endpoint go over one
keep-alive connection; the `duration_ms` of every collection the server made
meanwhile is read back from the answers. Everything is stopped by PID (Ray with
ray.shutdown() in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import signal
import statistics
import subprocess
import sys
import threading
import time

import run

import network

# `network` above is bench/network.py; from here on the repository comes first, so
# `frameworks` is the Django app, not this script.
sys.path.insert(0, str(run.REPO))

from frameworks import collectors  # noqa: E402
from tests.clusters import RayCluster, free_port  # noqa: E402

HOST = run.HOST
COLLECT_TARGET_MS = 500.0
API_TARGET_MS = 20.0
HISTORY = 60  # SOLLOL_FRAMEWORK_HISTORY's default
TIMEOUT = 2.0
log = run.log


class DaskProcesses:
    """A Dask scheduler and its workers, each a process of ours, on 127.0.0.1."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self.port = free_port()
        self.dashboard_port = free_port()
        self.url = f"http://{HOST}:{self.dashboard_port}"
        self.address = f"tcp://{HOST}:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.client = None

    def start(self) -> None:
        python = str(run.PYTHON)
        self.processes.append(
            subprocess.Popen(
                [
                    *(python, "-m", "distributed.cli.dask_scheduler"),
                    *("--host", HOST, "--port", str(self.port)),
                    *("--dashboard-address", f"{HOST}:{self.dashboard_port}"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        for _ in range(self.workers):
            self.processes.append(
                subprocess.Popen(
                    [
                        *(python, "-m", "distributed.cli.dask_worker", self.address),
                        *("--host", HOST, "--nthreads", "1", "--no-dashboard"),
                        *("--memory-limit", "512MiB"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        self.client = Client(self.address, timeout=60)
        self.client.wait_for_workers(self.workers, timeout=60)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1)]
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
    }


def collector_cycles(ray: RayCluster, dask: DaskProcesses, cycles: int) -> dict:
    """Time the collectors in this process: each alone, then both at once."""

    async def once():
        ray_result = await collectors.collect_ray(
            ray.dashboard_url, token=ray.token, timeout=TIMEOUT
        )
        dask_result = await collectors.collect_dask(dask.url, timeout=TIMEOUT)
        started = time.perf_counter()
        both = await collectors.collect(
            ray.dashboard_url, ray.token, dask.url, timeout=TIMEOUT
        )
        both_ms = (time.perf_counter() - started) * 1000
        return ray_result, dask_result, both, both_ms

    times: dict[str, list[float]] = {"ray": [], "dask": [], "both": []}
    statuses = set()
    fallbacks = 0
    for _ in range(cycles):
        ray_result, dask_result, both, both_ms = asyncio.run(once())
        statuses |= {ray_result.status, dask_result.status, *(c.status for c in both)}
        fallbacks += any("workers.html" in w for w in dask_result.warnings)
        times["ray"].append(ray_result.duration_ms)
        times["dask"].append(dask_result.duration_ms)
        times["both"].append(both_ms)
        time.sleep(0.1)
    if statuses != {"active"}:
        raise RuntimeError(f"a collection was not active: {statuses}")
    return {
        **{name: summary(values) for name, values in times.items()},
        "dask_fallbacks": fallbacks,
    }


def api_latency(server: run.Server, gets: int) -> dict:
    """Sequential GETs of both endpoints on one keep-alive connection."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    times: dict[str, list[float]] = {"/api/ray/metrics": [], "/api/dask/metrics": []}
    collections: dict[str, dict[float, float]] = {path: {} for path in times}
    sizes: dict[str, int] = {}
    try:
        for i in range(gets + 20):
            for path in times:
                started = time.perf_counter()
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status}")
                if i >= 20:  # the first 20 warm up
                    times[path].append(elapsed)
                answer = json.loads(body)
                if answer["status"] != "active":
                    raise RuntimeError(f"{path}: {answer['status']} {answer['error']}")
                collections[path][answer["collected_at"]] = answer["duration_ms"]
                sizes[path] = len(body)
    finally:
        connection.close()
    return {
        path: {
            **summary(values),
            "bytes": sizes[path],
            "server_collections": summary(list(collections[path].values())),
        }
        for path, values in times.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--gets", type=int, default=500)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    info = run.machine()
    workspace = run.Workspace(keep=False)
    ray = RayCluster(num_cpus=2)
    dask = DaskProcesses(workers=2)
    server = None
    results: dict = {}
    try:
        log("starting Ray and Dask")
        ray.start()
        ray.ask("hold", seconds=3600)
        ray.ask("actor")
        dask.start()
        running = dask.client.submit(time.sleep, 3600, pure=False)
        # A busy Dask: tasks keep finishing, so /json/identity.json mostly fails
        # (a distributed bug) and the workers page is read instead.
        busy = threading.Event()

        def keep_busy() -> None:
            while not busy.is_set():
                dask.client.gather(dask.client.map(time.sleep, [0.01] * 20, pure=False))

        loader = threading.Thread(target=keep_busy, daemon=True)
        loader.start()
        log(f"Ray {ray.dashboard_url}, Dask {dask.url}; collecting in-process")
        results["collectors"] = collector_cycles(ray, dask, args.cycles)
        server = workspace.server(
            "embedded",
            {
                "SOLLOL_RAY_DASHBOARD_URL": ray.dashboard_url,
                "SOLLOL_RAY_AUTH_TOKEN": ray.token,
                "SOLLOL_DASK_DASHBOARD_URL": dask.url,
                "SOLLOL_FRAMEWORK_INTERVAL": "1",
                "SOLLOL_DISCOVER_LOCALHOST": "false",
            },
        )
        server.prepare()
        code = network.code_state()
        server.start()
        for path in ("/api/ray/metrics", "/api/dask/metrics"):
            network.wait_until(
                lambda path=path: (
                    network.get_json(server.port, path)["status"] == "active"
                ),
                30,
                f"{path} active",
            )
        # A full sparkline history, as a server that has run a while answers with.
        log(f"waiting for {HISTORY} collections of each")
        for path in ("/api/ray/metrics", "/api/dask/metrics"):
            network.wait_until(
                lambda path=path: (
                    len(network.get_json(server.port, path)["history"]) >= HISTORY
                ),
                HISTORY * 3,
                f"{path} history",
                every=1.0,
            )
        log("timing the API")
        results["api"] = api_latency(server, args.gets)
        busy.set()
        loader.join(30)
        running.cancel()
    finally:
        if server is not None:
            server.stop()
        dask.stop()
        ray.stop()
        workspace.close()
    report = render(results, info, started, code, args)
    print(report)
    if not args.no_write:
        run.write_results(report, info)
    return 0


def render(results: dict, info: dict, started: dt.datetime, code: str, args) -> str:
    command = " ".join(["bench/frameworks.py", *sys.argv[1:]])
    import distributed
    import ray

    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: {code}, Ray and Dask collection\n",
        f"Written by `.venv/bin/python {command}`. Machine: {info['nproc']} CPUs, "
        f"Python {info['python']}, load {info['load']} at start. Ray "
        f"{ray.__version__} (head in its own process, 2 CPUs, token auth, one CPU "
        f"held by a task, one actor) and distributed {distributed.__version__} "
        "(scheduler and 2 worker processes, one task running, batches of 20 "
        "10 ms tasks submitted back to back all along), all on 127.0.0.1. "
        f"Collector timeout {TIMEOUT:g} s.\n",
        f"Collection, this process, {args.cycles} cycles (ms, every GET of the "
        "framework at once, parsing included):\n",
        "| collection | n | median | p95 | max | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("ray", "Ray (6 endpoints)"),
        ("dask", "Dask (3 endpoints)"),
        ("both", "Ray and Dask at once (the beat task)"),
    ):
        row = results["collectors"][name]
        out.append(
            f"| {label} | {row['n']} | {row['median']:.1f} | {row['p95']:.1f} | "
            f"{row['max']:.1f} | ≤ {COLLECT_TARGET_MS:.0f} | "
            f"{'yes' if row['max'] <= COLLECT_TARGET_MS else 'no'} |"
        )
    out.append(
        f"\nDask collections that found `/json/identity.json` failing (HTTP 500, a "
        "distributed bug while tasks finish) and read `/info/main/workers.html` "
        f"instead: {results['collectors']['dask_fallbacks']} of {args.cycles}.\n"
    )
    out += [
        "",
        f"API, a fresh `manage.py serve` (SQLite) collecting both every 1 s, its "
        f"history full ({HISTORY} collections each), "
        f"{args.gets} sequential GETs of each endpoint, alternating, on one "
        "keep-alive connection after 20 warm-up rounds (ms, client-side):\n",
        "| endpoint | n | median | p95 | max | answer bytes | target (median) | met "
        "| server's collections meanwhile: n, median, max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path, row in results["api"].items():
        server = row["server_collections"]
        out.append(
            f"| `{path}` | {row['n']} | {row['median']:.2f} | {row['p95']:.2f} | "
            f"{row['max']:.2f} | {row['bytes']} | ≤ {API_TARGET_MS:.0f} | "
            f"{'yes' if row['median'] <= API_TARGET_MS else 'no'} | "
            f"{server['n']}, {server['median']:.1f}, {server['max']:.1f} |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())

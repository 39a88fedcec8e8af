"""Time the UnifiedDashboard launcher and the demo; append results to RESULTS.md.

    .venv/bin/python bench/launcher.py            # 3 rounds, about 2 minutes
    .venv/bin/python bench/launcher.py --rounds 1

What an operator waits for, each from a fresh process on free loopback ports:
- `UnifiedDashboard(enable_dask=True).run()`: until the API answers, until
  /api/dask/metrics says active; and from SIGTERM to exit (cluster closed);
- the same with `enable_ray=True` (skipped without ray);
- `examples/unified_dashboard_demo.py`: until three apps, three healthy nodes,
  request metrics and an active Dask are all in the API; and from SIGTERM to exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> Any:
    try:
        response = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def until(condition: Callable[[], Any], started: float, timeout: float) -> float:
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"not within {timeout} s")


def stop(process: subprocess.Popen) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(120)
    if code != 0:
        raise RuntimeError(f"exit code {code}")
    return time.monotonic() - started


def launcher(kind: str, data: Path) -> dict[str, float]:
    port, framework_port = free_port(), free_port()
    options = (
        f"dask_dashboard_port={framework_port}, enable_dask=True, dask_workers=2"
        if kind == "dask"
        else f"ray_dashboard_port={framework_port}, enable_ray=True, ray_num_cpus=1"
    )
    env = {
        **os.environ,
        "SOLLOL_DATA_DIR": str(data),
        "DATABASE_URL": f"sqlite:///{data / 'db.sqlite3'}",
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        "SOLLOL_FRAMEWORK_INTERVAL": "0.5",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "DASHBOARD_METRIC_PORT": str(free_port()),
        "AUTOSCALER_METRIC_PORT": str(free_port()),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("REDIS_URL", None)
    script = (
        "from sollol import UnifiedDashboard\n"
        f"UnifiedDashboard({port}, {options}).run()"
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen(
        [PYTHON, "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        serving = until(lambda: get(url + "/api/applications"), started, 300)
        active = until(
            lambda: (get(f"{url}/api/{kind}/metrics") or {}).get("status") == "active",
            started,
            300,
        )
        return {"serving": serving, "active": active, "stop": stop(process)}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def demo() -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    arguments = ["--port", str(port), "--dask-dashboard-port", str(free_port())]
    arguments += ["--ollama-port", "0", "--rpc-port", "0", "--no-faults"]
    started = time.monotonic()
    process = subprocess.Popen(
        [PYTHON, str(REPO / "examples" / "unified_dashboard_demo.py"), *arguments],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def populated() -> bool:
        apps = get(url + "/api/applications") or {}
        nodes = get(url + "/api/network/nodes?limit=1000") or {}
        metrics = get(url + "/api/metrics") or {}
        dask = get(url + "/api/dask/metrics") or {}
        return (
            len(apps.get("applications", [])) == 3
            and [n["status"] for n in nodes.get("nodes", [])] == ["healthy"] * 3
            and len(metrics.get("per_application", [])) == 3
            and dask.get("status") == "active"
        )

    try:
        serving = until(lambda: get(url + "/api/applications"), started, 300)
        full = until(populated, started, 300)
        return {"serving": serving, "active": full, "stop": stop(process)}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401

        kinds = ["dask", "ray", "demo"]
    except ImportError:
        kinds = ["dask", "demo"]
    load = os.getloadavg()
    samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):  # kinds take turns, so a noisy moment hits all
        for kind in kinds:
            with tempfile.TemporaryDirectory() as data:
                result = demo() if kind == "demo" else launcher(kind, Path(data))
            samples[kind].append(result)
            print(kind, {k: round(v, 2) for k, v in result.items()}, flush=True)
    labels = {
        "dask": "`UnifiedDashboard(enable_dask=True, dask_workers=2)`",
        "ray": "`UnifiedDashboard(enable_ray=True, ray_num_cpus=1)`",
        "demo": "`examples/unified_dashboard_demo.py --no-faults`",
    }
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"## {now}: UnifiedDashboard launcher and demo, start and stop",
        "",
        f"Written by `.venv/bin/python bench/launcher.py --rounds {args.rounds}`. "
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {' '.join(f'{x:.2f}' for x in load)} at start. Fresh process and "
        "SQLite each run, free loopback ports, seconds from process start (median "
        "/ max of the rounds). `active`: the API reports the cluster active (demo: "
        "3 apps, 3 healthy nodes, requests from each app and Dask active). `stop`: "
        "SIGTERM to exit code 0, clusters closed.",
        "",
        "| launched | runs | API answers | active | stop |",
        "|---|---|---|---|---|",
    ]
    for kind in kinds:
        runs = samples[kind]

        def cell(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [run[key] for run in runs]
            return f"{statistics.median(values):.1f} / {max(values):.1f}"

        lines.append(
            f"| {labels[kind]} | {len(runs)} | {cell('serving')} | {cell('active')} "
            f"| {cell('stop')} |"
        )
    with RESULTS.open("a") as results:
        results.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

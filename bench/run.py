"""Benchmark the dashboard against a bare ASGI ceiling; append results to RESULTS.md.

    .venv/bin/python bench/run.py            # full run, about 12 minutes
    .venv/bin/python bench/run.py --quick    # smoke test, about 2 minutes
    .venv/bin/python bench/run.py --only paced --kinds embedded daphne bare-daphne

Every measurement starts a fresh server process (free port on 127.0.0.1, fresh
SQLite data dir), waits until it answers, prepares it through its own HTTP API,
warms it up, measures, and stops it by its PID (SIGTERM, then wait). Servers of
one scenario take turns round by round, so a noisy neighbour hits them alike;
compare the ratios more than the absolute numbers.

Scenarios: (a) heartbeats at saturation with wrk, (b) heartbeats at a paced
1,000/s from bench/paced.py, (c) GET /api/applications pages with 10,000 apps,
(d) start-up time and idle RSS of the embedded server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paced

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "RESULTS.md"
PYTHON = REPO / ".venv" / "bin" / "python"
UVICORN = REPO / ".venv" / "bin" / "uvicorn"
DAPHNE = REPO / ".venv" / "bin" / "daphne"
WRK = "/usr/bin/wrk"
HOST = "127.0.0.1"
HEARTBEAT_APPS = 200
LISTING_APPS = 10_000
PAGE_SIZE = 100
CONNECTIONS = 20
PACED_RATE = 1000.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "saturation": 3000.0,  # heartbeats/s, embedded, 20 connections
    "paced_p99_ms": 10.0,  # at 1,000/s offered
    "page_median_ms": 50.0,  # page of 100 out of 10,000 apps
    "idle_rss_mb": 150.0,
    "first_200_s": 3.0,
}


@dataclass(frozen=True)
class Kind:
    """One way of serving: what to run and whether it is the dashboard."""

    name: str
    label: str
    dashboard: bool
    argv: Callable[[int], list[str]]


UVICORN_FLAGS = "--loop uvloop --http httptools --no-access-log --log-level warning"

KINDS = {
    "embedded": Kind(
        "embedded",
        "dashboard, `manage.py serve` (uvicorn+uvloop+httptools)",
        True,
        lambda port: [
            str(PYTHON),
            *f"manage.py serve --host {HOST} --port {port}".split(),
        ],
    ),
    "daphne": Kind(
        "daphne",
        "dashboard, daphne `sollol_site.asgi:application`",
        True,
        lambda port: [
            str(DAPHNE),
            *f"-b {HOST} -p {port} sollol_site.asgi:application".split(),
        ],
    ),
    "bare-uvicorn": Kind(
        "bare-uvicorn",
        "bare ASGI on uvicorn+uvloop+httptools (ceiling)",
        False,
        lambda port: [
            str(UVICORN),
            *f"--host {HOST} --port {port} {UVICORN_FLAGS} bench.bare_asgi:app".split(),
        ],
    ),
    "bare-daphne": Kind(
        "bare-daphne",
        "bare ASGI on daphne",
        False,
        lambda port: [str(DAPHNE), *f"-b {HOST} -p {port} bench.bare_asgi:app".split()],
    ),
}
CEILING = "bare-uvicorn"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "SOLLOL_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    # Embedded mode, as a user gets it: SQLite, in-memory channel layer, open writes.
    for name in ("DATABASE_URL", "REDIS_URL", "SOLLOL_API_TOKEN"):
        env.pop(name, None)
    # The load comes from one address standing for many apps, each heartbeating
    # far faster than a real one: without this, the write limits (per address,
    # SOLLOL_WRITE_RATE, and per app, SOLLOL_APP_WRITE_RATE) would be measured.
    env["SOLLOL_WRITE_RATE"] = "0"
    env["SOLLOL_APP_WRITE_RATE"] = "0"
    return env


def machine_busy_seconds() -> float:
    """Return CPU seconds spent busy by all CPUs since boot."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Server:
    """A server process this harness started, known and stopped by its PID."""

    def __init__(
        self,
        kind: Kind,
        data_dir: Path,
        env: dict[str, str] | None = None,
        root: Path = REPO,
    ) -> None:
        self.kind = kind
        self.root = root  # the checkout it runs (bench/page.py --against: another)
        self.data_dir = data_dir
        self.env = env or {}  # settings on top of server_env (bench/network.py)
        self.port = free_port()
        self.log_path = data_dir / f"{kind.name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def prepare(self) -> None:
        """Apply migrations where the server does not do it itself (daphne)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.kind.name == "daphne":
            subprocess.run(
                [str(PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"],
                cwd=self.root,
                env=server_env(self.data_dir),
                check=True,
            )

    def start(self, timeout: float = 60.0) -> float:
        """Start the process; return seconds from its start to the first 200 on /."""
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.kind.argv(self.port),
            cwd=self.root,
            env={**server_env(self.data_dir), **self.env},
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind.name} exited early:\n{self.log_tail()}")
            if self.answers():
                return time.perf_counter() - started
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(
            f"{self.kind.name} not ready in {timeout}s:\n{self.log_tail()}"
        )

    def answers(self) -> bool:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM our process, wait for it; SIGKILL it (by PID) if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.kind.name} (pid {self.process.pid}) ignored SIGTERM; killing")
            self.process.kill()
            return self.process.wait()

    def status_kb(self, field: str) -> int:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        """Return the CPU time of the process, all its threads, so far."""
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def tree_cpu_seconds(self) -> float:
        """Return the CPU time of the process and of its children now running (the
        gateway's writer process)."""
        assert self.process is not None
        pid = self.process.pid
        total = _cpu_of(pid)
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    total += sum(_cpu_of(int(c)) for c in children.read().split())
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
        return total

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(
            self.log_path.read_text(errors="replace").splitlines()[-lines:]
        )


class Workspace:
    """Temp data dirs, one per server, removed at the end."""

    def __init__(self, keep: bool) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sollol-bench-"))
        self.keep = keep
        self.count = 0

    def server(self, kind: str, env: dict[str, str] | None = None) -> Server:
        self.count += 1
        return Server(KINDS[kind], self.root / f"{self.count:03d}-{kind}", env)

    def close(self) -> None:
        if self.keep:
            log(f"kept data dirs and server logs in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def run_server(workspace: Workspace, kind: str, body: Callable[[Server], dict]) -> dict:
    """Start a fresh server of kind, run body(server), stop it; return body's result."""
    server = workspace.server(kind)
    server.prepare()
    ready_after = server.start()
    try:
        result = body(server)
    except Exception:
        log(f"{kind} failed; server log:\n{server.log_tail()}")
        raise
    finally:
        exit_code = server.stop()
    result.update(kind=kind, ready_after_s=ready_after, exit_code=exit_code)
    # uvicorn re-raises the SIGTERM that stopped it once it has shut down cleanly.
    if exit_code not in (0, None, -signal.SIGTERM):
        log(f"{kind} exited with {exit_code}:\n{server.log_tail()}")
    return result


def register_heartbeat_apps(server: Server, count: int = HEARTBEAT_APPS) -> None:
    """Register the apps the heartbeats are for, the way clients do it."""
    requests = [
        paced.post_request(
            HOST, server.port, "/api/applications/register", paced.heartbeat_body(i)
        )
        for i in range(count)
    ]
    outcome = paced.closed(HOST, server.port, requests, connections=CONNECTIONS)
    if outcome["statuses"] != {"200": count}:
        raise RuntimeError(f"registering {count} apps: {outcome['statuses']}")


def wrk(server: Server, seconds: float) -> dict:
    """Run wrk with heartbeat.lua; return its BENCH_JSON line plus the text."""
    url = f"http://{HOST}:{server.port}/api/applications/heartbeat"
    argv = f"-t1 -c{CONNECTIONS} -d{seconds:g}s --latency -s bench/heartbeat.lua"
    completed = subprocess.run(
        [WRK, *argv.split(), url, "--", str(HEARTBEAT_APPS), "bench-"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line.removeprefix("BENCH_JSON "))
            result["text"] = completed.stdout
            return result
    raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{completed.stdout}")


class Usage:
    """CPU used by the server, by the load generator and by everyone else."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall = time.perf_counter()
        self.machine = machine_busy_seconds()
        self.server_cpu = server.cpu_seconds()
        self.generator = children_cpu_seconds()

    def finish(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        machine = machine_busy_seconds() - self.machine
        server_cpu = self.server.cpu_seconds() - self.server_cpu
        generator = children_cpu_seconds() - self.generator
        return {
            "wall_s": wall,
            "server_cores": server_cpu / wall,
            "server_cpu_s": server_cpu,
            "generator_cores": generator / wall,
            # The machine is shared: what neither side used came from elsewhere.
            "other_cores": max(0.0, machine - server_cpu - generator) / wall,
        }


def saturation(server: Server, seconds: float, warmup: float) -> dict:
    if server.kind.dashboard:
        register_heartbeat_apps(server)
    wrk(server, warmup)
    usage = Usage(server)
    result = wrk(server, seconds)
    result.update(usage.finish())
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["server_us_per_request"] = (
        result["server_cpu_s"] / result["requests"] * 1e6 if result["requests"] else 0
    )
    result["rss_after_mb"] = server.status_kb("VmRSS") / 1024
    return result


def paced_load(server: Server, seconds: float, warmup: float) -> dict:
    if server.kind.dashboard:
        register_heartbeat_apps(server)
    usage = Usage(server)
    argv = (
        f"bench/paced.py --port {server.port} --rate {PACED_RATE:g} "
        f"--duration {seconds:g} --warmup {warmup:g} --connections {CONNECTIONS} "
        f"--apps {HEARTBEAT_APPS}"
    )
    completed = subprocess.run(
        [str(PYTHON), *argv.split()],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(completed.stdout)
    result.update(usage.finish())
    result["errors"] = result["non2xx"] + result["socket_errors"] + result["timeouts"]
    result["rss_after_mb"] = server.status_kb("VmRSS") / 1024
    return result


def listing(server: Server, requests: int) -> dict:
    result: dict[str, Any] = {}
    if server.kind.dashboard:
        # Through the server's own API: a heartbeat with a name registers its app.
        bodies = [
            paced.post_request(
                HOST, server.port, paced.HEARTBEAT_PATH, paced.heartbeat_body(i, "app-")
            )
            for i in range(LISTING_APPS)
        ]
        outcome = paced.closed(HOST, server.port, bodies, connections=CONNECTIONS)
        if outcome["statuses"] != {"200": LISTING_APPS}:
            raise RuntimeError(f"registering {LISTING_APPS}: {outcome['statuses']}")
        result["registration_rate"] = outcome["rate"]
    chooser = random.Random(7)
    connection = http.client.HTTPConnection(HOST, server.port, timeout=30)
    times, sizes, totals = [], [], set()
    for index in range(10 + requests):
        offset = chooser.randrange(0, LISTING_APPS - PAGE_SIZE + 1)
        started = time.perf_counter()
        connection.request(
            "GET", f"/api/applications?limit={PAGE_SIZE}&offset={offset}"
        )
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET page: {response.status} {body[:200]!r}")
        if index < 10:
            continue  # warm-up
        times.append(elapsed)
        sizes.append(len(body))
        page = json.loads(body)
        totals.add(page["total"])
        result["active_at_end"] = page["active"]
        if server.kind.dashboard and len(page["applications"]) != PAGE_SIZE:
            raise RuntimeError(f"page at {offset} had {len(page['applications'])}")
    connection.close()
    ordered = sorted(times)
    result.update(
        requests=requests,
        median_ms=statistics.median(ordered) * 1e3,
        p95_ms=paced.percentile(ordered, 0.95) * 1e3,
        max_ms=ordered[-1] * 1e3,
        page_bytes=round(statistics.mean(sizes)),
        totals=sorted(totals),
    )
    return result


def startup(workspace: Workspace, idle: float) -> dict:
    """Time a first start (migrations included), idle RSS, then a restart."""
    server = workspace.server("embedded")
    server.prepare()
    fresh = server.start()
    try:
        time.sleep(idle)
        rss = server.status_kb("VmRSS") / 1024
        hwm = server.status_kb("VmHWM") / 1024
    finally:
        server.stop()
    again = Server(KINDS["embedded"], server.data_dir)
    restart = again.start()
    stopped = time.perf_counter()
    exit_code = again.stop()
    return {
        "first_200_fresh_s": fresh,
        "first_200_restart_s": restart,
        "idle_rss_mb": rss,
        "peak_rss_mb": hwm,
        "stop_s": time.perf_counter() - stopped,
        "exit_code": exit_code,
    }


# --- the run ----------------------------------------------------------------------


def rounds_of(kinds: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """Interleave: every round runs every kind, starting one later each round."""
    order = []
    for number in range(rounds):
        shift = number % len(kinds)
        order += [(number + 1, kind) for kind in [*kinds[shift:], *kinds[:shift]]]
    return order


def median_of(rows: list[dict], key: Callable[[dict], float]) -> float:
    return statistics.median(key(row) for row in rows)


def by_kind(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["kind"], []).append(row)
    return grouped


def add_ratios(rows: list[dict], value: str, ratio: str, inverse: bool = False) -> None:
    """Give every row its value relative to the ceiling measured in the same round."""
    ceilings = {row["round"]: row[value] for row in rows if row["kind"] == CEILING}
    for row in rows:
        ceiling = ceilings.get(row["round"])
        if not ceiling or not row[value]:
            row[ratio] = float("nan")
        else:
            row[ratio] = ceiling / row[value] if inverse else row[value] / ceiling


def shell(*argv: str) -> str:
    try:
        return subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, str]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = next(
        (line for line in shell("free", "-h").splitlines() if line.startswith("Mem:")),
        "",
    ).split()
    dirty = shell(
        "git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"
    )
    return {
        "nproc": shell("nproc"),
        "cpu": model,
        "memory": f"{memory[1]} total, {memory[6]} available" if memory else "?",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (shell(WRK, "-v").splitlines() or ["wrk ?"])[0].split(" [")[0],
        "commit": shell("git", "rev-parse", "--short", "HEAD"),
        "uncommitted": str(len(dirty.splitlines())),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke-test run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    parser.add_argument(
        "--only", nargs="+", choices=["saturation", "paced", "listing", "startup"]
    )
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), help="servers (all)")
    args = parser.parse_args()
    if args.quick:
        config = dict(rounds=1, seconds=3, warmup=1, page_requests=50, idle=5)
    else:
        config = dict(rounds=3, seconds=15, warmup=3, page_requests=200, idle=5)
    if args.rounds:
        config["rounds"] = args.rounds
    kinds = args.kinds or list(KINDS)
    scenarios = args.only or ["saturation", "paced", "listing", "startup"]
    started = dt.datetime.now(dt.UTC)
    info = machine()
    log(f"commit {info['commit']}, {info['nproc']} CPUs, load {info['load']}")
    workspace = Workspace(args.keep)
    results: dict[str, Any] = {"config": config, "machine": info}
    try:
        if "saturation" in scenarios:
            rows = []
            for number, kind in rounds_of(kinds, config["rounds"]):
                log(f"saturation round {number}: {kind}")
                row = run_server(
                    workspace,
                    kind,
                    lambda s: saturation(s, config["seconds"], config["warmup"]),
                )
                row["round"] = number
                log(
                    f"  {row['rps']:.0f} req/s, p99 {row['p99_us'] / 1e3:.2f} ms, "
                    f"non-2xx {row['non2xx']}, server {row['server_cores']:.2f} "
                    f"cores, others {row['other_cores']:.2f}"
                )
                rows.append(row)
            add_ratios(rows, "rps", "ratio")
            results["saturation"] = rows
        if "paced" in scenarios:
            rows = []
            for number, kind in rounds_of(kinds, config["rounds"]):
                log(f"paced round {number}: {kind}")
                row = run_server(
                    workspace,
                    kind,
                    lambda s: paced_load(s, config["seconds"], config["warmup"]),
                )
                row["round"] = number
                log(
                    f"  achieved {row['achieved_rate']:.0f}/s, p50 "
                    f"{row['latency']['p50_ms']:.2f} p99 {row['latency']['p99_ms']:.2f}"
                    f" max {row['latency']['max_ms']:.1f} ms, errors {row['errors']}, "
                    f"send lag p99 {row['send_lag']['p99_ms']:.2f} ms"
                )
                rows.append(row)
            results["paced"] = rows
        if "listing" in scenarios:
            rows = []
            for kind in ["embedded", "daphne", CEILING]:
                log(f"listing: {kind}")
                row = run_server(
                    workspace, kind, lambda s: listing(s, config["page_requests"])
                )
                row["round"] = 1
                log(f"  median {row['median_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms")
                rows.append(row)
            add_ratios(rows, "median_ms", "ratio")
            results["listing"] = rows
        if "startup" in scenarios:
            rows = []
            for number in range(config["rounds"]):
                log(f"startup round {number + 1}")
                row = startup(workspace, config["idle"])
                log(
                    f"  first 200 {row['first_200_fresh_s']:.2f} s (fresh), "
                    f"{row['first_200_restart_s']:.2f} s (restart), idle RSS "
                    f"{row['idle_rss_mb']:.0f} MB"
                )
                rows.append(row)
            results["startup"] = rows
    finally:
        workspace.close()
    info["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    report = render(results, started, args.quick)
    write_results(report, info)
    print(report)


# --- RESULTS.md -------------------------------------------------------------------


HEADER = """# Benchmark results

Written by `bench/run.py`; every run appends one dated section. Newest last.

## How to read this

Machine when this file was created: {machine}.
Each section repeats what it ran on. The machines are shared and noisy (other
jobs run tests next to the benchmark); "others" is the CPU used meanwhile by
processes that were neither the server nor the load generator, in cores.
Trust ratios to the ceiling, measured in the same round, more than absolute
numbers. Every measurement ran against a fresh server
process with a fresh SQLite data dir (no `DATABASE_URL`, `REDIS_URL` or
`SOLLOL_API_TOKEN`), started and stopped by PID; only 127.0.0.1 is contacted.

Commands (from the repository root):

- full run: `.venv/bin/python bench/run.py`; smoke test: `--quick`
- servers: `.venv/bin/python manage.py serve --host 127.0.0.1 --port P`;
  `.venv/bin/python manage.py migrate` then
  `.venv/bin/daphne -b 127.0.0.1 -p P sollol_site.asgi:application`;
  ceiling `.venv/bin/uvicorn --loop uvloop --http httptools --no-access-log
  --log-level warning bench.bare_asgi:app`, and `.venv/bin/daphne bench.bare_asgi:app`
- (a) `wrk -t1 -c20 -d15s --latency -s bench/heartbeat.lua
  http://127.0.0.1:P/api/applications/heartbeat -- 200 bench-` after 200
  `POST /api/applications/register` and a 3 s wrk warm-up
- (b) `.venv/bin/python bench/paced.py --port P --rate 1000 --duration 15
  --warmup 3` (open loop, latency from the scheduled send time)
- (c) 10,000 apps registered by heartbeats over 20 connections, then 10 + 200
  sequential `GET /api/applications?limit=100&offset=<random>` on one keep-alive
  connection; the ceiling serves a static page of the same size
- (d) `manage.py serve` on an empty data dir (migrations included): time from
  process start to the first 200 on `GET /`; VmRSS after 5 s idle; then a restart
  on the same data dir
"""


def ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def render(results: dict, started: dt.datetime, quick: bool) -> str:
    info, config = results["machine"], results["config"]
    kind = "quick smoke test" if quick else "full run"
    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit {info['commit']}"
        f" (+{info['uncommitted']} uncommitted files), {kind}\n",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), memory {info['memory']}, "
        f"kernel {info['kernel']}, Python {info['python']}, {info['wrk']}. "
        f"Load average {info['load']} at start, {info['load_after']} at end. "
        f"{config['rounds']} interleaved round(s) of {config['seconds']} s "
        f"after {config['warmup']} s warm-up; tables show medians over rounds.\n",
    ]
    out += render_targets(results)
    if "saturation" in results:
        out += render_saturation(results["saturation"], config)
    if "paced" in results:
        out += render_paced(results["paced"], config)
    if "listing" in results:
        out += render_listing(results["listing"])
    if "startup" in results:
        out += render_startup(results["startup"])
    return "\n".join(out) + "\n"


def render_targets(results: dict) -> list[str]:
    rows = []

    def add(name: str, measured: float | None, limit: float, unit: str, higher: bool):
        if measured is None:
            return
        met = measured >= limit if higher else measured <= limit
        sign = "≥" if higher else "≤"
        rows.append(
            f"| {name} | {sign} {limit:g} {unit} | {measured:,.1f} {unit} | "
            f"{'yes' if met else '**no**'} |"
        )

    def embedded(rows_key: str) -> list[dict]:
        return [r for r in results.get(rows_key, []) if r["kind"] == "embedded"]

    if embedded("saturation"):
        add(
            "heartbeats/s at 20 connections, embedded",
            median_of(embedded("saturation"), lambda r: r["rps"]),
            TARGETS["saturation"],
            "req/s",
            True,
        )
    if embedded("paced"):
        add(
            "p99 at 1,000/s offered, embedded",
            median_of(embedded("paced"), lambda r: r["latency"]["p99_ms"]),
            TARGETS["paced_p99_ms"],
            "ms",
            False,
        )
    if embedded("listing"):
        add(
            "GET page of 100 of 10k apps, median, embedded",
            embedded("listing")[0]["median_ms"],
            TARGETS["page_median_ms"],
            "ms",
            False,
        )
    if results.get("startup"):
        add(
            "idle RSS, embedded",
            max(r["idle_rss_mb"] for r in results["startup"]),
            TARGETS["idle_rss_mb"],
            "MB",
            False,
        )
        add(
            "first 200 after process start (fresh data dir, slowest round)",
            max(r["first_200_fresh_s"] for r in results["startup"]),
            TARGETS["first_200_s"],
            "s",
            False,
        )
    if not rows:
        return []
    return [
        "### Targets\n",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def render_saturation(rows: list[dict], config: dict) -> list[str]:
    out = [
        f"### a. Heartbeats at saturation (`wrk -t1 -c{CONNECTIONS} "
        f"-d{config['seconds']}s --latency`, keep-alive, {HEARTBEAT_APPS} apps)\n",
        "| server | req/s | ratio to ceiling | p50 ms | p99 ms | non-2xx | "
        "socket errors | server CPU µs/req | server cores | RSS after MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, group in by_kind(rows).items():
        errors = sum(
            r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
            for r in group
        )
        out.append(
            f"| {KINDS[kind].label} | {median_of(group, lambda r: r['rps']):,.0f} | "
            f"{median_of(group, lambda r: r['ratio']):.2f} | "
            f"{ms(median_of(group, lambda r: r['p50_us'] / 1e3))} | "
            f"{ms(median_of(group, lambda r: r['p99_us'] / 1e3))} | "
            f"{sum(r['non2xx'] for r in group)} | {errors} | "
            f"{median_of(group, lambda r: r['server_us_per_request']):,.0f} | "
            f"{median_of(group, lambda r: r['server_cores']):.2f} | "
            f"{median_of(group, lambda r: r['rss_after_mb']):.0f} |"
        )
    out += [
        "",
        "Per round (non-2xx and errors are totals, not medians, above):\n",
        "| round | server | req/s | ratio | p50 ms | p99 ms | max ms | non-2xx | "
        "others (cores) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['round']} | {r['kind']} | {r['rps']:,.0f} | {r['ratio']:.2f} | "
            f"{ms(r['p50_us'] / 1e3)} | {ms(r['p99_us'] / 1e3)} | "
            f"{ms(r['max_us'] / 1e3)} | {r['non2xx']} | {r['other_cores']:.2f} |"
        )
    return [*out, ""]


def render_paced(rows: list[dict], config: dict) -> list[str]:
    out = [
        f"### b. Heartbeats at a paced {PACED_RATE:,.0f}/s offered "
        f"(bench/paced.py, {CONNECTIONS} keep-alive connections, "
        f"{config['seconds']} s)\n",
        'Latency from each request\'s scheduled send time. "service p99" is from '
        'the actual send (what a closed-loop tool would report); "send lag" is '
        "how late the generator sent (timer and wait for a free connection).\n",
        "| server | achieved/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | "
        "service p99 ms | send lag p99 ms | generator cores | server cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, group in by_kind(rows).items():

        def med(part: str, key: str, group: list[dict] = group) -> str:
            return ms(statistics.median(row[part][key] for row in group))

        out.append(
            f"| {KINDS[kind].label} | "
            f"{median_of(group, lambda r: r['achieved_rate']):,.0f} | "
            f"{med('latency', 'p50_ms')} | {med('latency', 'p99_ms')} | "
            f"{med('latency', 'p999_ms')} | "
            f"{ms(max(r['latency']['max_ms'] for r in group))} | "
            f"{sum(r['errors'] for r in group)} | {med('service_time', 'p99_ms')} | "
            f"{med('send_lag', 'p99_ms')} | "
            f"{median_of(group, lambda r: r['generator_cpu']):.2f} | "
            f"{median_of(group, lambda r: r['server_cores']):.2f} |"
        )
    out += [
        "",
        "Per round (max and errors above are the worst/total over rounds):\n",
        "| round | server | achieved/s | p50 ms | p99 ms | max ms | errors | "
        "send lag p99 ms | others (cores) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['round']} | {r['kind']} | {r['achieved_rate']:,.0f} | "
            f"{ms(r['latency']['p50_ms'])} | {ms(r['latency']['p99_ms'])} | "
            f"{ms(r['latency']['max_ms'])} | {r['errors']} | "
            f"{ms(r['send_lag']['p99_ms'])} | {r['other_cores']:.2f} |"
        )
    return [*out, ""]


def render_listing(rows: list[dict]) -> list[str]:
    out = [
        f"### c. GET /api/applications, page of {PAGE_SIZE} at random offsets, "
        f"{LISTING_APPS:,} apps, {rows[0]['requests']} sequential requests\n",
        "| server | median ms | p95 ms | max ms | × ceiling (median) | page bytes | "
        "apps registered/s (heartbeats) | active/total at end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = r.get("registration_rate")
        out.append(
            f"| {KINDS[r['kind']].label} | {ms(r['median_ms'])} | {ms(r['p95_ms'])} | "
            f"{ms(r['max_ms'])} | {r['ratio']:.1f} | {r['page_bytes']:,} | "
            f"{f'{rate:,.0f}' if rate else '-'} | "
            f"{r['active_at_end']:,}/{r['totals'][-1]:,} |"
        )
    return [*out, ""]


def render_startup(rows: list[dict]) -> list[str]:
    out = [
        "### d. Embedded server: start-up and idle memory\n",
        "| round | first 200, fresh data dir s | first 200, restart s | "
        "idle RSS MB | peak RSS MB | stop after SIGTERM s |",
        "|---|---|---|---|---|---|",
    ]
    for number, r in enumerate(rows, 1):
        out.append(
            f"| {number} | {r['first_200_fresh_s']:.2f} | "
            f"{r['first_200_restart_s']:.2f} | {r['idle_rss_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['stop_s']:.2f} |"
        )
    return [*out, ""]


def write_results(report: str, info: dict[str, str]) -> None:
    if not RESULTS.exists():
        machine = (
            f"`nproc` {info['nproc']} ({info['cpu']}), `free -h` memory "
            f"{info['memory']}, kernel {info['kernel']}"
        )
        RESULTS.write_text(HEADER.format(machine=machine))
    with RESULTS.open("a") as results:
        results.write(report)
    log(f"appended to {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())

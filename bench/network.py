"""Benchmark network probing against simulated fleets; append results to RESULTS.md.

    .venv/bin/python bench/network.py            # full run, about 15 minutes
    .venv/bin/python bench/network.py --quick    # smoke test, about 4 minutes
    .venv/bin/python bench/network.py --only detect scale listing
    .venv/bin/python bench/network.py --profile             # py-spy summaries too
    .venv/bin/python bench/network.py --concurrency default 64 32 16

Scenarios, each on fresh `manage.py serve` processes (fresh SQLite data dir,
started and stopped by PID, see bench/run.py):

(e) detect: 3 simulated nodes and 2 simulated RPC servers, probed every 1 s with a
    1 s timeout. A node is killed, an RPC server is killed, a node hangs (accepts,
    never answers), in turns, each at a random moment of the probe cycle; the time
    from the kill to the event on /ws/network/nodes or /ws/network/backends is
    measured, then the victim is revived and its recovery awaited.
(f) scale: 1,000 simulated nodes probed every 5 s (timeout 2 s), once per
    SOLLOL_PROBE_CONCURRENCY given (--concurrency). After a warm-up, one
    window samples /api/network/health each second (cycle time of every cycle) and
    the CPU of the dashboard and of the fleet; a second window also reads
    /api/network/nodes after every cycle to check that every node's last_probe
    advanced in every cycle; then a few kills and hangs are timed on the stream.
(g) listing: 10 + 200 sequential GET /api/network/nodes with 1,000 nodes on one
    keep-alive connection, with probing quiet (interval 3600 s: one cycle at
    start-up, in which every node answered, so the list is full size) and while
    probing every 5 s; the ceiling is bench/bare_asgi.py on uvicorn serving the same
    bytes as a static file.

The fleets run in their own process (`manage.py simulate_fleet`, also stopped by
PID) on 127.0.0.0/8 addresses, so their CPU is not counted as the dashboard's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import queue
import random
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import run
from paced import percentile
from websockets.sync.client import connect

HOST = run.HOST
DETECT_BASE = "127.2.0.1"  # the small fleet: 127.2.0.1, .2, .3
SCALE_BASE = "127.1.0.1"  # the 1,000 nodes: 127.1.0.1 … 127.1.3.232
SCALE_NODES = 1000
SCALE_INTERVAL = 5.0
SCALE_TIMEOUT = 2.0
DETECT_INTERVAL = 1.0
DETECT_TIMEOUT = 1.0
DOWN = ("unhealthy", "offline")

TARGETS = {
    "detect_s": 3.5,  # kill → event, at interval 1 s and timeout 1 s (the issue)
    "scale_cores": 1.0,  # dashboard CPU at 1,000 nodes every 5 s
    "listing_median_ms": 100.0,  # GET /api/network/nodes, 1,000 nodes
}

log = run.log


# --- processes ------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process, all its threads (ended ones included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / run.CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """Return {tid: utime + stime} of the threads alive now."""
    result = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        result[int(task.name)] = (int(fields[11]) + int(fields[12])) / run.CLOCK_TICKS
    return result


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class FleetProcess:
    """`manage.py simulate_fleet` in its own process, known and stopped by its PID."""

    def __init__(self, workdir: Path, nodes: int, rpc: int, base: str) -> None:
        self.workdir = workdir
        self.control_port = run.free_port()
        self.argv = [
            str(run.PYTHON),
            "manage.py",
            "simulate_fleet",
            *f"--nodes {nodes} --rpc {rpc} --base {base}".split(),
            *f"--control-port {self.control_port}".split(),
        ]
        self.command = " ".join(["manage.py", *self.argv[2:]])
        self.out_path = workdir / f"fleet-{base}.out"
        self.process: subprocess.Popen | None = None
        self.urls: list[str] = []
        self.backends: list[str] = []

    def start(self, timeout: float = 180.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.argv,
            cwd=run.REPO,
            env=run.server_env(self.workdir),
            stdout=self.out_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            text = self.out_path.read_text(errors="replace")
            if "Ctrl-C to stop." in text:
                self._parse(text)
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"simulate_fleet exited early:\n{text[-3000:]}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("simulate_fleet did not start in time")

    def _parse(self, text: str) -> None:
        section = ""
        for line in text.splitlines():
            if line.startswith("Simulated Ollama nodes"):
                section = "nodes"
            elif line.startswith("Simulated RPC backends"):
                section = "rpc"
            elif line.startswith("  ") and section == "nodes":
                self.urls.append(line.strip())
            elif line.startswith("  ") and section == "rpc":
                self.backends.append(line.strip())
            else:
                section = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def control(self, path: str, body: dict | None = None) -> dict:
        connection = http.client.HTTPConnection(HOST, self.control_port, timeout=10)
        try:
            connection.request(
                "POST",
                path,
                body=json.dumps(body or {}).encode(),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"control {path}: {response.status} {answer}")
            return answer
        finally:
            connection.close()

    def pin_loaded(self) -> int:
        """Keep the models loaded at start loaded for good; return how many.

        The simulator gives them 1–5 minutes to live, so the node list (and what a
        probe reads) would shrink while the benchmark runs.
        """
        connection = http.client.HTTPConnection(HOST, self.control_port, timeout=30)
        try:
            connection.request("GET", "/nodes")
            nodes = json.loads(connection.getresponse().read())["nodes"]
        finally:
            connection.close()
        pinned = 0
        for node in nodes:
            for model in node["loaded"]:
                self.control(
                    f"/nodes/{node['index']}/load",
                    {
                        "model": model["name"],
                        "size_vram": model["size_vram"],
                        "keep_alive": -1,
                    },
                )
                pinned += 1
        return pinned

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            log(f"simulate_fleet (pid {self.process.pid}) ignored SIGTERM; killing")
            self.process.kill()
            self.process.wait()


def code_state() -> str:
    """Return the commit (and uncommitted changes) a server started now runs.

    Others commit while this runs, and every fresh server loads the tree as it is.
    """
    dirty = [
        line
        for line in run.shell(
            "git",
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--untracked-files=no",
        ).splitlines()
        # "XY path": shell() strips the output, and with it the first line's
        # leading blank (" M path"), so the path is the last field.
        if not line.split(maxsplit=1)[-1].startswith("bench/")
    ]
    commit = run.shell("git", "rev-parse", "--short", "HEAD")
    return commit + (f" +{len(dirty)} uncommitted outside bench/" if dirty else "")


def network_env(**settings: Any) -> dict[str, str]:
    env = {"SOLLOL_DISCOVER_LOCALHOST": "false"}
    env.update({f"SOLLOL_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def get_json(port: int, path: str, timeout: float = 30) -> Any:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        return json.loads(body)
    finally:
        connection.close()


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


class Stream:
    """A WebSocket stream read on a thread: (monotonic, wall, event) in a queue."""

    def __init__(self, port: int, path: str) -> None:
        self.socket = connect(f"ws://{HOST}:{port}{path}", max_size=None, legacy=True)
        self.events: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.socket:
                self.events.put((time.monotonic(), time.time(), json.loads(message)))
        except Exception:
            return  # closed: the reader just ends

    def wait(
        self, wanted: Callable[[dict], bool], timeout: float
    ) -> tuple[float, float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching event on the stream")
            try:
                received = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if wanted(received[2]):
                return received

    def close(self) -> None:
        self.socket.close()
        self.thread.join(5)


def summary_s(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p90": percentile(ordered, 0.90),
        "max": ordered[-1],
        "min": ordered[0],
    }


# --- profiles (py-spy) ----------------------------------------------------------------

PYSPY = run.REPO / ".venv" / "bin" / "py-spy"
# (label, frame-name prefix, ancestor prefix or "") → share of GIL-holding samples
# whose stack holds that frame (under that ancestor).
PROBE_PARTS = [
    ("probe cycle thread: `run_cycle` (all)", "run_cycle (", ""),
    ("… httpx `AsyncClient.send` (requests to nodes)", "AsyncClient.send (", ""),
    (
        "… … httpcore `AsyncConnectionPool._assign_requests_to_connections`",
        "AsyncConnectionPool._assign_requests_to_connections (",
        "",
    ),
    (
        "… … failed `import sniffio` in httpcore `current_async_library`",
        "_find_and_load (",
        "current_async_library (",
    ),
    ("… `Response.json` and `_models` (probes.py parsing)", "_models (", ""),
    ("probe writer: `record_node_probes` (all)", "record_node_probes (", ""),
    ("… `QuerySet.bulk_update`", "QuerySet.bulk_update (", ""),
    ("… `select_for_update().in_bulk`", "QuerySet.in_bulk (", ""),
    ("… `record_events`", "record_events (", ""),
    ("logging (`Logger._log`, httpx's INFO line per request)", "Logger._log (", ""),
    ("HTTP requests to the dashboard (`convert_exception_to_response`)", "", ""),
]
LISTING_PARTS = [
    ("`NodeListView.get` (all)", "NodeListView.get (", ""),
    ("… `node_list_json` (rows to JSON text)", "node_list_json (", ""),
    ("… … ORM: iterating the rows", "ValuesListIterable.__iter__ (", ""),
    ("… … datetime converters", "DatabaseOperations.convert_datetimefield_value (", ""),
    ("… … `json.dumps` of each node's summary", "_dumps (", ""),
    ("request plumbing: outside the view", "!NodeListView.get (", ""),
]
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py:81)", "Runner.run (asyncio/")


def pyspy(pid: int, seconds: float, path: Path) -> subprocess.Popen:
    """Start `py-spy record` on pid: GIL-holding samples, by thread, raw stacks."""
    argv = [
        str(PYSPY),
        "record",
        "--pid",
        str(pid),
        "--threads",
        "--gil",
        "--rate",
        "100",
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(path),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise_profile(path: Path, parts: list[tuple[str, str, str]]) -> dict:
    """Return the share of samples under each part, and the top threads and leaves."""
    total = 0
    shares = dict.fromkeys([label for label, _, _ in parts], 0)
    threads: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            continue  # waiting, misread as running
        n = int(count)
        total += n
        thread = frames[0].rsplit(": ", 1)[-1]
        threads[thread] = threads.get(thread, 0) + n
        leaf = frames[-1].split(" (")[0]
        leaves[leaf] = leaves.get(leaf, 0) + n
        names = frames[1:]
        request = any(f.startswith("convert_exception_to_response") for f in names)
        for label, prefix, ancestor in parts:
            if not prefix:  # every request to the dashboard
                hit = request
            elif prefix.startswith("!"):  # requests outside all of these frames
                hit = request and not any(
                    f.startswith(tuple(prefix[1:].split(","))) for f in names
                )
            else:
                index = next(
                    (i for i, f in enumerate(names) if f.startswith(prefix)), None
                )
                hit = index is not None and (
                    not ancestor or any(f.startswith(ancestor) for f in names[:index])
                )
            if hit:
                shares[label] += n
    top = sorted(leaves.items(), key=lambda item: -item[1])[:6]
    return {
        "samples": total,
        "shares": {k: v / total for k, v in shares.items()} if total else {},
        "threads": {
            k: v / total for k, v in sorted(threads.items(), key=lambda i: -i[1])
        }
        if total
        else {},
        "leaves": [(k, v / total) for k, v in top] if total else [],
    }


def render_profile(title: str, profile: dict) -> list[str]:
    out = [
        f"{title} ({profile['samples']:,} samples holding the GIL; share of them "
        "with the frame on the stack):\n",
        "| part | share |",
        "|---|---|",
    ]
    out += [f"| {label} | {share:.0%} |" for label, share in profile["shares"].items()]
    threads = ", ".join(
        f"{name} {share:.0%}" for name, share in list(profile["threads"].items())[:5]
    )
    leaves = ", ".join(f"`{name}` {share:.0%}" for name, share in profile["leaves"])
    return [*out, "", f"By thread: {threads}. Top leaf frames: {leaves}.", ""]


# --- (e) detection --------------------------------------------------------------------


def detect(workspace: run.Workspace, trials: int) -> dict:
    fleet = FleetProcess(workspace.root / "fleet-detect", 3, 2, DETECT_BASE)
    fleet.start()
    server = None
    try:
        env = network_env(
            ollama_nodes=",".join(fleet.urls),
            rpc_backends=",".join(fleet.backends),
            probe_interval=DETECT_INTERVAL,
            probe_timeout=DETECT_TIMEOUT,
        )
        server = workspace.server("embedded", env)
        server.prepare()
        code = code_state()
        server.start()

        def ready() -> bool:
            health = get_json(server.port, "/api/network/health")
            return health["nodes_healthy"] == 3 and health["backends_online"] == 2

        wait_until(ready, 30, "3 healthy nodes and 2 online backends")
        result = detect_trials(server, fleet, trials)
        result["fleet_command"] = fleet.command
        result["code"] = code
        result["health"] = get_json(server.port, "/api/network/health")
        return result
    finally:
        if server is not None:
            server.stop()
        fleet.stop()


def detect_trials(server: run.Server, fleet: FleetProcess, trials: int) -> dict:
    nodes = Stream(server.port, "/ws/network/nodes")
    backends = Stream(server.port, "/ws/network/backends")
    chooser = random.Random(11)
    rows = []
    try:
        for trial in range(trials):
            for kind in ("node-die", "backend-die", "node-hang"):
                rows.append(
                    detect_one(
                        kind, trial, fleet, nodes, backends, chooser, DETECT_INTERVAL
                    )
                )
                row = rows[-1]
                log(
                    f"  {kind} #{trial + 1}: event after {row['detect_s']:.2f} s "
                    f"(stream delivery {row['delivery_ms']:.1f} ms), recovered "
                    f"after {row['recover_s']:.2f} s"
                )
    finally:
        nodes.close()
        backends.close()
    return {"trials": rows}


def detect_one(
    kind: str,
    trial: int,
    fleet: FleetProcess,
    nodes: Stream,
    backends: Stream,
    chooser: random.Random,
    interval: float,
    index: int | None = None,
    patience: float = 30.0,
) -> dict:
    """Break one victim at a random moment of the cycle; time the event; restore it."""
    if kind == "backend-die":
        index = trial % len(fleet.backends) if index is None else index
        victim, stream = fleet.backends[index], backends
        path, restore = f"/rpc/{index}/die", f"/rpc/{index}/revive"

        def down(e: dict) -> bool:
            return e["type"] == "backend_disconnected" and e["backend"] == victim

        def up(e: dict) -> bool:
            return e["type"] == "backend_connected" and e["backend"] == victim

    else:
        index = trial % len(fleet.urls) if index is None else index
        victim, stream = fleet.urls[index], nodes
        action, undo = ("die", "revive") if kind == "node-die" else ("hang", "unhang")
        path, restore = f"/nodes/{index}/{action}", f"/nodes/{index}/{undo}"

        def down(e: dict) -> bool:
            return (
                e["type"] == "status_change"
                and e["node"] == victim
                and e["new_status"] in DOWN
            )

        def up(e: dict) -> bool:
            return (
                e["type"] == "status_change"
                and e["node"] == victim
                and e["new_status"] == "healthy"
            )

    time.sleep(chooser.uniform(0, interval))  # a random phase of the probe cycle
    killed, killed_wall = time.monotonic(), time.time()
    fleet.control(path)
    try:
        received, received_wall, event = stream.wait(down, timeout=patience)
    except TimeoutError:
        # Not seen in time: counted as the patience, flagged (a lower bound).
        received, received_wall = killed + patience, killed_wall + patience
        event = {"timestamp": received_wall, "reason": "(no event in time)"}
    restored = time.monotonic()
    fleet.control(restore)
    try:
        back, _, _ = stream.wait(up, timeout=patience)
    except TimeoutError:
        back = restored + patience
    return {
        "timed_out": event["reason"] == "(no event in time)",
        "kind": kind,
        "victim": victim,
        "detect_s": received - killed,
        # event.timestamp is when the writer stored the probe result
        "stored_s": event["timestamp"] - killed_wall,
        "delivery_ms": (received_wall - event["timestamp"]) * 1e3,
        "reason": event.get("reason", ""),
        "recover_s": back - restored,
    }


# --- (f) scale ------------------------------------------------------------------------


class Window:
    """CPU of the dashboard (by thread), the fleet, this harness and the rest."""

    def __init__(self, server: run.Server, fleet: FleetProcess) -> None:
        self.server_pid = server.process.pid
        self.fleet_pid = fleet.pid
        self.wall = time.monotonic()
        self.machine = run.machine_busy_seconds()
        self.server = proc_cpu_seconds(self.server_pid)
        self.fleet = proc_cpu_seconds(self.fleet_pid)
        self.me = self_cpu_seconds()
        self.threads_start = thread_cpu_seconds(self.server_pid)
        self.threads_last = dict(self.threads_start)

    def sample_threads(self) -> None:
        """Note the threads' CPU now (threads that end between samples lose a bit)."""
        self.threads_last.update(thread_cpu_seconds(self.server_pid))

    def finish(self) -> dict[str, float]:
        self.sample_threads()
        wall = time.monotonic() - self.wall
        server = proc_cpu_seconds(self.server_pid) - self.server
        fleet = proc_cpu_seconds(self.fleet_pid) - self.fleet
        me = self_cpu_seconds() - self.me
        machine = run.machine_busy_seconds() - self.machine
        main = self.threads_last[self.server_pid] - self.threads_start[self.server_pid]
        return {
            "wall_s": wall,
            "server_cpu_s": server,
            "server_cores": server / wall,
            "server_main_thread_cores": main / wall,
            "server_other_threads_cores": (server - main) / wall,
            "fleet_cores": fleet / wall,
            "harness_cores": me / wall,
            "other_cores": max(0.0, machine - server - fleet - me) / wall,
        }


def scale(
    workspace: run.Workspace,
    fleet: FleetProcess,
    concurrency: int | None,
    window_s: float,
    warmup_cycles: int,
    kills: int,
    listing_requests: int,
    profile_s: float = 0,
) -> dict:
    """One fresh dashboard probing the 1,000 nodes; concurrency None: the default."""
    settings: dict[str, Any] = {
        "ollama_nodes": ",".join(fleet.urls),
        "probe_interval": SCALE_INTERVAL,
        "probe_timeout": SCALE_TIMEOUT,
    }
    if concurrency is not None:
        settings["probe_concurrency"] = concurrency
    server = workspace.server("embedded", network_env(**settings))
    server.prepare()
    code = code_state()
    ready_after = server.start()
    label = "default (256)" if concurrency is None else str(concurrency)
    try:
        result: dict[str, Any] = {
            "ready_after_s": ready_after,
            "concurrency": label,
            "code": code,
        }
        first = warm_up(server, warmup_cycles, require="probed")
        result["first_cycle"] = first
        result["health_after_warmup"] = statuses(server)
        log(
            f"  warm: first full cycle {first['seconds']:.2f} s; "
            f"{result['health_after_warmup']}; CPU window"
        )
        result["cpu_window"] = cpu_window(server, fleet, window_s)
        log(f"  {describe_window(result['cpu_window'])}")
        log("  coverage window (GET /api/network/nodes after every cycle)")
        result["coverage_window"] = coverage_window(server, fleet, window_s)
        log(f"  {describe_window(result['coverage_window'])}")
        log(f"  coverage: {result['coverage_window']['coverage']}")
        result["health_after_windows"] = statuses(server)
        if profile_s:
            log(f"  py-spy for {profile_s:g} s")
            path = server.data_dir / "probing.pyspy"
            spy = pyspy(server.process.pid, profile_s, path)
            result["profile_window"] = cpu_window(server, fleet, profile_s + 1)
            spy.wait(60)
            result["profile"] = summarise_profile(path, PROBE_PARTS)
        if kills:
            result["detect"] = scale_detect(server, fleet, kills, result)
        if listing_requests:
            result["listing"] = listing(server.port, listing_requests, SCALE_NODES)
            log(
                f"  listing while probing: median "
                f"{result['listing']['median_ms']:.1f} ms"
            )
            del result["listing"]["body"]
        result["rss_mb"] = server.status_kb("VmRSS") / 1024
        result["fleet_rss_mb"] = status_kb(fleet.pid, "VmRSS") / 1024
        result["log_lines"] = len(server.log_path.read_bytes().splitlines())
        return result
    except Exception:
        log(f"scale failed; server log:\n{server.log_tail()}")
        raise
    finally:
        server.stop()


def statuses(server: run.Server) -> str:
    health = get_json(server.port, "/api/network/health")
    return (
        f"{health['nodes_healthy']} healthy, {health['nodes_degraded']} degraded, "
        f"{health['nodes_down']} down"
    )


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def warm_up(server: run.Server, cycles: int, require: str = "answered") -> dict:
    """Wait for a cycle that probed every node, then `cycles` more.

    require "answered": and every node answered it (healthy or degraded, i.e. its
    models are listed); "probed": only that the cycle covered every node.
    """

    def complete() -> dict | None:
        health = get_json(server.port, "/api/network/health")
        cycle = health.get("probe_cycle")
        if (
            cycle
            and cycle["nodes"] == SCALE_NODES
            and (require == "probed" or health["nodes_down"] == 0)
        ):
            return cycle
        return None

    first = wait_until(complete, 180, "a full probe cycle", 0.5)
    last = first["started_at"]
    for _ in range(cycles):
        last = next_cycle(server, last, 120)["started_at"]
    return first


def next_cycle(server: run.Server, after: float, timeout: float) -> dict:
    def newer() -> dict | None:
        cycle = get_json(server.port, "/api/network/health")["probe_cycle"]
        return cycle if cycle and cycle["started_at"] > after else None

    return wait_until(newer, timeout, "the next probe cycle", 0.25)


def cpu_window(server: run.Server, fleet: FleetProcess, seconds: float) -> dict:
    """Sample /api/network/health each second; every cycle seen once."""
    window = Window(server, fleet)
    cycles: dict[float, dict] = {}
    health_ms = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        health = get_json(server.port, "/api/network/health")
        health_ms.append((time.perf_counter() - started) * 1e3)
        cycle = health["probe_cycle"]
        cycles.setdefault(cycle["started_at"], cycle)
        window.sample_threads()
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
    result = window.finish()
    result["cycles"] = [cycles[key] for key in sorted(cycles)][1:]  # began before
    result["health_median_ms"] = statistics.median(health_ms)
    return result


def coverage_window(server: run.Server, fleet: FleetProcess, seconds: float) -> dict:
    """After every cycle, read every node: each last_probe must have advanced."""
    window = Window(server, fleet)
    last_seen: dict[str, float] = {}
    cycles, checks = [], []
    after = get_json(server.port, "/api/network/health")["probe_cycle"]["started_at"]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cycle = next_cycle(server, after, 120)
        after = cycle["started_at"]
        window.sample_threads()
        # A new connection each time: uvicorn closes one idle for 5 s.
        listed = get_json(server.port, "/api/network/nodes?limit=1000")
        read_at = time.time()
        probes = {node["url"]: node["last_probe"] for node in listed["nodes"]}
        advanced = sum(
            1
            for url, at in probes.items()
            if url in last_seen and at is not None and at > last_seen[url]
        )
        in_cycle = sum(
            1 for at in probes.values() if at is not None and at >= cycle["started_at"]
        )
        ages = [read_at - at for at in probes.values() if at is not None]
        checks.append(
            {
                "started_at": cycle["started_at"],
                "cycle_nodes": cycle["nodes"],
                "listed": listed["total"],
                "probed_in_cycle": in_cycle,
                "advanced": advanced if last_seen else None,
                "oldest_probe_age_s": max(ages) if ages else None,
                "healthy": sum(n["status"] == "healthy" for n in listed["nodes"]),
            }
        )
        cycles.append(cycle)
        last_seen = probes
    result = window.finish()
    result["cycles"] = cycles
    result["checks"] = checks
    # Exact: a node probed in the cycle has last_probe >= the cycle's start.
    # ("advanced" can miss a node when cycles run back to back: the previous
    # read may have come after that node's probe in the next cycle.)
    full = [
        c
        for c in checks
        if c["cycle_nodes"] == SCALE_NODES and c["probed_in_cycle"] == SCALE_NODES
    ]
    # Did the harness see every cycle? Each starts when the last ended, or later.
    missed = sum(
        1
        for a, b in zip(cycles, cycles[1:], strict=False)
        if b["started_at"] - a["started_at"] > max(SCALE_INTERVAL, a["seconds"]) + 1.0
    )
    result["coverage"] = (
        f"{len(full)}/{len(checks)} cycles probed all {SCALE_NODES}"
        + (f" ({missed} cycles unseen)" if missed else "")
    )
    result["all_covered"] = bool(checks) and len(full) == len(checks) and not missed
    return result


def describe_window(window: dict) -> str:
    seconds = [c["seconds"] for c in window["cycles"]] or [float("nan")]
    return (
        f"dashboard {window['server_cores']:.2f} cores, fleet "
        f"{window['fleet_cores']:.2f}, others {window['other_cores']:.2f}; "
        f"{len(seconds)} cycles, median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s"
    )


def scale_detect(
    server: run.Server, fleet: FleetProcess, kills: int, result: dict
) -> dict:
    """Kills and hangs of healthy nodes among 1,000, at interval 5 s, timeout 2 s."""
    listed = get_json(server.port, "/api/network/nodes?limit=1000")["nodes"]
    healthy = [fleet.urls.index(n["url"]) for n in listed if n["status"] == "healthy"]
    if len(healthy) < 2 * kills:
        log(f"  only {len(healthy)} healthy nodes: no timed breaks")
        return {"trials": [], "skipped": f"only {len(healthy)} nodes healthy"}
    cycles = [c["seconds"] for c in result["coverage_window"]["cycles"]]
    patience = 2 * (SCALE_INTERVAL + max(cycles, default=SCALE_INTERVAL)) + 10
    nodes = Stream(server.port, "/ws/network/nodes")
    chooser = random.Random(13)
    rows = []
    victims = chooser.sample(healthy, 2 * kills)
    try:
        for number in range(kills):
            for offset, kind in enumerate(("node-die", "node-hang")):
                index = victims[2 * number + offset]
                row = detect_one(
                    kind,
                    0,
                    fleet,
                    nodes,
                    nodes,
                    chooser,
                    SCALE_INTERVAL,
                    index,
                    patience,
                )
                rows.append(row)
                log(
                    f"  1,000 nodes, {kind} of node {index}: event after "
                    f"{row['detect_s']:.2f} s, recovered after {row['recover_s']:.2f} s"
                )
    finally:
        nodes.close()
    return {"trials": rows, "patience_s": patience}


# --- (g) listing ----------------------------------------------------------------------


def listing(port: int, requests: int, expected: int | None) -> dict:
    """10 + requests sequential GET /api/network/nodes on one keep-alive connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    times, sizes, body = [], [], b""
    for index in range(10 + requests):
        started = time.perf_counter()
        connection.request("GET", "/api/network/nodes?limit=1000")
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET nodes: {response.status} {body[:200]!r}")
        if index < 10:
            continue
        times.append(elapsed)
        sizes.append(len(body))
    connection.close()
    if expected is not None and json.loads(body)["total"] != expected:
        raise RuntimeError(f"listed {json.loads(body)['total']} nodes, not {expected}")
    ordered = sorted(times)
    return {
        "requests": requests,
        "median_ms": statistics.median(ordered) * 1e3,
        "p95_ms": percentile(ordered, 0.95) * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "bytes": round(statistics.mean(sizes)),
        "body": body,
    }


def listing_rounds(
    workspace: run.Workspace,
    fleet: FleetProcess,
    rounds: int,
    requests: int,
    profile_s: float = 0,
    concurrency: int | None = None,
) -> tuple[list[dict], dict | None]:
    """Quiet dashboard, probing dashboard and the static ceiling, interleaved."""
    kinds = ["quiet", "probing", "ceiling"]
    rows: list[dict] = []
    profile = None
    body_file = workspace.root / "nodes-body.json"
    for number, kind in run.rounds_of(kinds, rounds):
        if kind == "ceiling" and not body_file.exists():
            continue  # after a dashboard has served the list once
        log(f"listing round {number}: {kind}")
        if kind == "ceiling":
            server = workspace.server(run.CEILING, {"BENCH_NODES_BODY": str(body_file)})
        else:
            interval = 3600 if kind == "quiet" else SCALE_INTERVAL
            env = network_env(
                ollama_nodes=",".join(fleet.urls),
                probe_interval=interval,
                probe_timeout=SCALE_TIMEOUT,
                **({"probe_concurrency": concurrency} if concurrency else {}),
            )
            server = workspace.server("embedded", env)
        server.prepare()
        code = code_state()
        server.start()
        try:
            if kind != "ceiling":
                warm_up(server, 0)  # every node answered: its models are listed
            usage = Window(server, fleet)
            row = listing(server.port, requests, None if kind == "ceiling" else 1000)
            row.update(usage.finish())
            if kind == "quiet" and profile_s and profile is None:
                path = server.data_dir / "listing.pyspy"
                spy = pyspy(server.process.pid, profile_s, path)
                listing(server.port, int(profile_s * 8), 1000)  # ≥ profile_s long
                spy.wait(60)
                profile = summarise_profile(path, LISTING_PARTS)
        except Exception:
            log(f"{kind} failed; server log:\n{server.log_tail()}")
            raise
        finally:
            server.stop()
        if kind != "ceiling":
            body_file.write_bytes(row["body"])
        del row["body"]
        row.update(kind=kind, round=number, code=code)
        log(
            f"  median {row['median_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms, "
            f"{row['bytes']:,} bytes"
        )
        rows.append(row)
    ceilings = {r["round"]: r["median_ms"] for r in rows if r["kind"] == "ceiling"}
    fallback = statistics.median(ceilings.values()) if ceilings else float("nan")
    for row in rows:
        row["ratio"] = row["median_ms"] / ceilings.get(row["round"], fallback)
    return rows, profile


# --- the run --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke-test run")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    parser.add_argument("--only", nargs="+", choices=["detect", "scale", "listing"])
    parser.add_argument("--no-write", action="store_true", help="print, do not append")
    parser.add_argument(
        "--listing-concurrency",
        type=int,
        help="SOLLOL_PROBE_CONCURRENCY for (g) (default: the setting's default)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy each dashboard of (f) for 20 s after its windows, and (g) once",
    )
    parser.add_argument(
        "--concurrency",
        nargs="+",
        default=["default", "64", "16"],
        help="SOLLOL_PROBE_CONCURRENCY values for (f); default: the setting's default",
    )
    args = parser.parse_args()
    if args.quick:
        config = dict(
            trials=2, window=15, warmup_cycles=1, kills=1, requests=30, rounds=1
        )
    else:
        config = dict(
            trials=12, window=60, warmup_cycles=2, kills=3, requests=200, rounds=3
        )
    scenarios = args.only or ["detect", "scale", "listing"]
    started = dt.datetime.now(dt.UTC)
    info = run.machine()
    info["code_at_start"] = code_state()
    log(f"commit {info['commit']}, {info['nproc']} CPUs, load {info['load']}")
    workspace = run.Workspace(args.keep)
    results: dict[str, Any] = {"config": config, "machine": info}
    fleet = None
    try:
        if "detect" in scenarios:
            log("detect: 3 nodes + 2 RPC servers, interval 1 s, timeout 1 s")
            results["detect"] = detect(workspace, config["trials"])
        if "scale" in scenarios or "listing" in scenarios:
            fleet = FleetProcess(workspace.root / "fleet", SCALE_NODES, 0, SCALE_BASE)
            log(f"starting {SCALE_NODES} simulated nodes: {fleet.command}")
            fleet.start()
            pinned = fleet.pin_loaded()
            log(f"  pinned {pinned} loaded models (keep_alive -1)")
            results["scale_fleet"] = (
                f"`{fleet.command}` (nodes on 127.1.0.1 … 127.1.3.232, port 11434); "
                f"the {pinned} models loaded at start then pinned (`POST "
                '/nodes/<i>/load {"keep_alive": -1}`) so that the fleet, and the '
                "node list, stay as they started"
            )
        if "scale" in scenarios:
            results["scale"] = []
            for number, value in enumerate(args.concurrency):
                concurrency = None if value == "default" else int(value)
                log(
                    f"scale: 1,000 nodes, interval 5 s, timeout 2 s, concurrency "
                    f"{value}"
                )
                results["scale"].append(
                    scale(
                        workspace,
                        fleet,
                        concurrency,
                        # the default's window in full, the others' shorter
                        config["window"] if number == 0 else config["window"] / 2,
                        config["warmup_cycles"],
                        config["kills"],
                        config["requests"] if number == 0 else config["requests"] // 4,
                        20 if args.profile else 0,
                    )
                )
        if "listing" in scenarios:
            results["listing"], results["listing_profile"] = listing_rounds(
                workspace,
                fleet,
                config["rounds"],
                config["requests"],
                10 if args.profile else 0,
                args.listing_concurrency,
            )
            results["listing_concurrency"] = args.listing_concurrency
    finally:
        if fleet is not None:
            fleet.stop()
        workspace.close()
    info["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    report = render(results, started, args.quick)
    if not args.no_write:
        with run.RESULTS.open("a") as out:
            out.write(report)
        log(f"appended to {run.RESULTS}")
    print(report)


# --- RESULTS.md -----------------------------------------------------------------------


def render(results: dict, started: dt.datetime, quick: bool) -> str:
    info = results["machine"]
    kind = "quick smoke test" if quick else "full run"
    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit {info['code_at_start']} at "
        f"start, network probing, {kind}\n",
        "Written by `bench/network.py` (`.venv/bin/python bench/network.py"
        + "".join(f" {arg}" for arg in sys.argv[1:])
        + f"`). Machine: {info['nproc']} CPUs "
        f"({info['cpu']}), memory {info['memory']}, kernel {info['kernel']}, Python "
        f"{info['python']}. Load average {info['load']} at start, "
        f"{info['load_after']} at end. Dashboard: `manage.py serve --host 127.0.0.1 "
        "--port P` with a fresh SQLite data dir, `SOLLOL_DISCOVER_LOCALHOST=false` and "
        "`SOLLOL_OLLAMA_NODES`/`SOLLOL_RPC_BACKENDS` set to the simulated fleet; "
        "fleets from `manage.py simulate_fleet` in their own process. "
        '"others" is CPU used meanwhile by processes that were neither the '
        "dashboard, the fleet nor this harness.\n",
    ]
    codes = {results["detect"]["code"]} if "detect" in results else set()
    codes |= {v["code"] for v in results.get("scale", [])}
    codes |= {r["code"] for r in results.get("listing", []) if r["kind"] != "ceiling"}
    if len(codes) > 1:
        out.append(
            "**The code under test changed during this run** (others committed; "
            "each fresh server loads the tree as it is): "
            + ", ".join(f"`{c}`" for c in sorted(codes))
            + ". Each part below says which it ran.\n"
        )
    out += render_targets(results)
    if "detect" in results:
        out += render_detect(results["detect"])
    if results.get("scale"):
        out += render_scale(results["scale"], results["scale_fleet"])
    if "listing" in results:
        out += render_listing(
            results["listing"],
            results.get("listing_concurrency"),
            results["scale_fleet"],
        )
        if results.get("listing_profile"):
            out += render_profile(
                "Profile of the quiet dashboard answering GET /api/network/nodes "
                "back to back (py-spy 0.4.3, `record --threads --gil --rate 100`, "
                "10 s)",
                results["listing_profile"],
            )
    return "\n".join(out) + "\n"


def render_targets(results: dict) -> list[str]:
    rows = []

    def add(name: str, goal: str, measured: str, met: bool) -> None:
        rows.append(f"| {name} | {goal} | {measured} | {'yes' if met else '**no**'} |")

    bound = DETECT_INTERVAL + DETECT_TIMEOUT + 0.5
    for kind, label in (
        ("node-die", "node killed → `status_change` on /ws/network/nodes"),
        ("backend-die", "RPC server killed → `backend_disconnected`"),
        ("node-hang", "node hangs → `status_change` (costs one timeout)"),
    ):
        trials = results.get("detect", {}).get("trials", [])
        values = [r["detect_s"] for r in trials if r["kind"] == kind]
        if values:
            s = summary_s(values)
            add(
                f"{label}, interval 1 s, timeout 1 s (max of {s['n']})",
                f"≤ {TARGETS['detect_s']:g} s (interval + timeout + 0.5 s = "
                f"{bound:g} s)",
                f"median {s['median']:.2f} s, p90 {s['p90']:.2f} s, max "
                f"{s['max']:.2f} s",
                s["max"] <= TARGETS["detect_s"],
            )
    if results.get("scale"):
        default = results["scale"][0]
        window = default["cpu_window"]
        add(
            f"dashboard CPU, 1,000 nodes every 5 s (timeout 2 s), concurrency "
            f"{default['concurrency']}",
            f"≤ {TARGETS['scale_cores']:g} core",
            f"{window['server_cores']:.2f} cores",
            window["server_cores"] <= TARGETS["scale_cores"],
        )
        seconds = [c["seconds"] for c in window["cycles"]] or [float("nan")]
        add(
            "… each node probed every 5 s: probe cycle (median / max)",
            f"≤ {SCALE_INTERVAL:g} s",
            f"{statistics.median(seconds):.1f} s / {max(seconds):.1f} s",
            max(seconds) <= SCALE_INTERVAL,
        )
        coverage = default["coverage_window"]
        add(
            "… every node probed in every cycle",
            "all",
            coverage["coverage"],
            coverage["all_covered"],
        )
        add(
            "… nodes healthy after the windows (all 1,000 simulated nodes are up)",
            "1,000 healthy",
            default["health_after_windows"],
            default["health_after_windows"].startswith(f"{SCALE_NODES} healthy"),
        )
    quiet = [r for r in results.get("listing", []) if r["kind"] == "quiet"]
    if quiet:
        median = statistics.median(r["median_ms"] for r in quiet)
        add(
            "GET /api/network/nodes, 1,000 nodes, median (quiet, median of rounds)",
            f"≤ {TARGETS['listing_median_ms']:g} ms",
            f"{median:.1f} ms",
            median <= TARGETS["listing_median_ms"],
        )
    probing = [r for r in results.get("listing", []) if r["kind"] == "probing"]
    if probing:
        median = statistics.median(r["median_ms"] for r in probing)
        add(
            "the same while probing 1,000 nodes every 5 s",
            f"≤ {TARGETS['listing_median_ms']:g} ms",
            f"{median:.1f} ms",
            median <= TARGETS["listing_median_ms"],
        )
    if not rows:
        return []
    return [
        "### Targets\n",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ] + [
        *rows,
        "",
    ]


def render_detect(result: dict) -> list[str]:
    rows = result["trials"]
    out = [
        "### e. Failure to event, 3 nodes + 2 RPC servers, interval 1 s, timeout 1 s\n",
        f"Code: `{result['code']}`. Fleet: `{result['fleet_command']}`. Streams "
        "read with `websockets` (sync client). Each break comes at a random moment "
        "(uniform over one interval); "
        "time from the control request to the event arriving on the socket; "
        '"stored" is from the break to the event\'s timestamp (when the writer '
        'stored the probe result), "delivery" from there to the client. Then the '
        "victim is revived (unhung) and its `healthy`/`backend_connected` awaited.\n",
        "| break | n | median s | p90 s | max s | min s | stored median s | "
        "delivery median ms | delivery max ms | recovery median s | recovery max s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("node-die", "backend-die", "node-hang"):
        group = [r for r in rows if r["kind"] == kind]
        if not group:
            continue
        s = summary_s([r["detect_s"] for r in group])
        recover = [r["recover_s"] for r in group]
        delivery = [r["delivery_ms"] for r in group]
        out.append(
            f"| {kind} | {s['n']} | {s['median']:.2f} | {s['p90']:.2f} | "
            f"{s['max']:.2f} | {s['min']:.2f} | "
            f"{statistics.median(r['stored_s'] for r in group):.2f} | "
            f"{statistics.median(delivery):.1f} | {max(delivery):.1f} | "
            f"{statistics.median(recover):.2f} | {max(recover):.2f} |"
        )
    reasons = sorted({f"{r['kind']}: {r['reason']}" for r in rows})
    cycle = result["health"].get("probe_cycle") or {}
    out += [
        "",
        "Reasons given: " + "; ".join(f"`{r}`" for r in reasons) + ". Last cycle at "
        f"the end: {cycle.get('seconds')} s for {cycle.get('nodes')} nodes and "
        f"{cycle.get('backends')} backends.",
        "",
    ]
    return out


def render_scale(variants: list[dict], fleet_command: str) -> list[str]:
    out = [
        f"### f. {SCALE_NODES:,} simulated nodes, probed every {SCALE_INTERVAL:g} s "
        f"(timeout {SCALE_TIMEOUT:g} s)\n",
        f"Fleet: {fleet_command}. "
        f"Dashboard env adds `SOLLOL_PROBE_INTERVAL={SCALE_INTERVAL:g} "
        f"SOLLOL_PROBE_TIMEOUT={SCALE_TIMEOUT:g}` and, for the other rows, "
        "`SOLLOL_PROBE_CONCURRENCY` (one fresh dashboard each). Warm-up: the first "
        "cycle that probed all nodes (it also reads every node's /api/tags, as one "
        "cycle a minute does) plus further cycles. Window A samples "
        "/api/network/health once a second; window B also reads /api/network/nodes "
        "after every cycle. CPU from /proc/<pid>/stat (utime+stime, all threads) "
        'over each window; "main thread" is the event-loop thread, the rest are the '
        "scheduler's cycle thread, the probe writer and request workers. Cycle times "
        "are `probe_cycle.seconds` of every cycle that began in the window.\n",
        "| concurrency | window | s | cycles | cycle median s | cycle max s | "
        "dashboard cores | main thread | other threads | fleet cores | harness | "
        "others | coverage | nodes after the windows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        for name, w in (("A", v["cpu_window"]), ("B", v["coverage_window"])):
            seconds = [c["seconds"] for c in w["cycles"]] or [float("nan")]
            out.append(
                f"| {v['concurrency']} | {name} | {w['wall_s']:.0f} | "
                f"{len(w['cycles'])} | {statistics.median(seconds):.2f} | "
                f"{max(seconds):.2f} | {w['server_cores']:.2f} | "
                f"{w['server_main_thread_cores']:.2f} | "
                f"{w['server_other_threads_cores']:.2f} | {w['fleet_cores']:.2f} | "
                f"{w['harness_cores']:.2f} | {w['other_cores']:.2f} | "
                + (w["coverage"] if name == "B" else "-")
                + f" | {v['health_after_windows'] if name == 'B' else '-'} |"
            )
    out.append("")
    for v in variants:
        cpu, coverage = v["cpu_window"], v["coverage_window"]
        out += [
            f"Concurrency {v['concurrency']} (code `{v['code']}`): first full cycle "
            f"{v['first_cycle']['seconds']:.2f} s; after warm-up "
            f"{v['health_after_warmup']}. Cycle seconds (A): "
            + ", ".join(f"{c['seconds']:.2f}" for c in cpu["cycles"])
            + "; (B): "
            + ", ".join(f"{c['seconds']:.2f}" for c in coverage["cycles"])
            + ". Start-to-start (B): "
            + ", ".join(
                f"{b['started_at'] - a['started_at']:.1f}"
                for a, b in zip(
                    coverage["cycles"], coverage["cycles"][1:], strict=False
                )
            )
            + " s. After each cycle of B, nodes whose last_probe is at or after the "
            "cycle's start / whose last_probe moved since the previous read / oldest "
            "last_probe when read: "
            + "; ".join(coverage_check(c) for c in coverage["checks"])
            + f". /api/network/health median {cpu['health_median_ms']:.1f} ms. RSS at "
            f"the end: dashboard {v['rss_mb']:.0f} MB, fleet {v['fleet_rss_mb']:.0f} "
            f"MB; dashboard log lines {v['log_lines']:,}.",
            "",
        ]
        if "listing" in v:
            r = v["listing"]
            out += [
                f"GET /api/network/nodes on it, right after (probing on): median "
                f"{r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, max "
                f"{r['max_ms']:.1f} ms ({r['requests']} requests, {r['bytes']:,} "
                "bytes).",
                "",
            ]
        if "profile" in v:
            w = v["profile_window"]
            out += render_profile(
                f"Profile, concurrency {v['concurrency']}, 20 s after the windows "
                "(py-spy 0.4.3, `record --threads --gil --rate 100`; "
                f"dashboard {w['server_cores']:.2f} cores meanwhile)",
                v["profile"],
            )
        detect = v.get("detect")
        if detect and detect.get("skipped"):
            out += [f"No timed breaks: {detect['skipped']}.", ""]
        elif detect:
            rows = detect["trials"]
            bound = SCALE_INTERVAL + SCALE_TIMEOUT + 0.5
            out += [
                f"Breaks of healthy nodes among the {SCALE_NODES:,} (after the "
                f"windows; interval + timeout + 0.5 s = {bound:g} s; an event not "
                f"seen within {detect['patience_s']:.0f} s counts as that, flagged):"
                "\n",
                "| break | n | median s | max s | not seen | recovery median s | "
                "recovery max s |",
                "|---|---|---|---|---|---|---|",
            ]
            for kind in ("node-die", "node-hang"):
                group = [r for r in rows if r["kind"] == kind]
                s = summary_s([r["detect_s"] for r in group])
                recover = [r["recover_s"] for r in group]
                out.append(
                    f"| {kind} | {s['n']} | {s['median']:.2f} | {s['max']:.2f} | "
                    f"{sum(r['timed_out'] for r in group)} | "
                    f"{statistics.median(recover):.2f} | {max(recover):.2f} |"
                )
            out.append("")
    return out


def coverage_check(check: dict) -> str:
    advanced = "-" if check["advanced"] is None else check["advanced"]
    return f"{check['probed_in_cycle']}/{advanced}/{check['oldest_probe_age_s']:.1f} s"


def render_listing(rows: list[dict], concurrency: int | None, fleet: str) -> list[str]:
    labels = {
        "quiet": "dashboard, probing quiet (interval 3600 s, after the first cycle)",
        "probing": "dashboard, probing 1,000 nodes every 5 s",
        "ceiling": "bare ASGI on uvicorn+uvloop+httptools, same bytes (ceiling)",
    }
    out = [
        f"### g. GET /api/network/nodes, {SCALE_NODES:,} nodes, "
        f"{rows[0]['requests']} sequential requests on one keep-alive connection\n",
        f"Fleet: {fleet}. Probing concurrency "
        + ("the default (256)" if concurrency is None else str(concurrency))
        + "; the quiet dashboard lists nodes after its first cycle, in which every "
        "node answered. "
        "After 10 warm-up requests; each round starts fresh servers; the ceiling "
        "serves the body the dashboard last served (`BENCH_NODES_BODY`, "
        "bench/bare_asgi.py). Medians over rounds:\n",
        "| server | median ms | p95 ms | max ms | × ceiling (median) | bytes | "
        "server CPU ms/request |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("quiet", "probing", "ceiling"):
        group = [r for r in rows if r["kind"] == kind]
        if not group:
            continue
        out.append(
            f"| {labels[kind]} | {run.median_of(group, lambda r: r['median_ms']):.2f}"
            f" | {run.median_of(group, lambda r: r['p95_ms']):.2f} | "
            f"{max(r['max_ms'] for r in group):.2f} | "
            f"{run.median_of(group, lambda r: r['ratio']):.0f} | "
            f"{run.median_of(group, lambda r: r['bytes']):,.0f} | "
            + (
                "- (probing too) |"
                if kind == "probing"
                else f"{run.median_of(group, cpu_per_request):.1f} |"
            )
        )
    out += [
        "",
        "| round | server | median ms | p95 ms | max ms | ratio | others (cores) | "
        "code |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['round']} | {r['kind']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f}"
            f" | {r['max_ms']:.2f} | {r['ratio']:.0f} | {r['other_cores']:.2f} | "
            f"{'-' if r['kind'] == 'ceiling' else r['code']} |"
        )
    return [*out, ""]


def cpu_per_request(row: dict) -> float:
    return row["server_cpu_s"] / (row["requests"] + 10) * 1e3


if __name__ == "__main__":
    os.chdir(run.REPO)
    sys.exit(main())

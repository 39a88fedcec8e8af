"""Real Ray and Dask clusters on loopback, for tests and benchmarks.

Ray runs in a child process (`python tests/clusters.py ray`) that answers one JSON
line per command on its stdin, so a test can compare what the dashboard reports
with what `ray.nodes()` and `ray.cluster_resources()` say, and ends with
`ray.shutdown()` when told to stop (or when its stdin closes). Everything binds to
127.0.0.1: the GCS on a free port (never 6379, Redis's), the dashboard on another,
token authentication on with a token of our own. No `ray stop`: it would end every
Ray process on the host.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Its own REPO and free_port (not tests.liveserver's): this file also runs as the
# script of the Ray child process, where the tests package is not importable.
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def importable(name: str) -> bool:
    """Return whether a package is installed, without importing it (Ray is heavy)."""
    return importlib.util.find_spec(name) is not None


class RayCluster:
    """A local Ray head node in a child process, stopped with ray.shutdown()."""

    def __init__(self, num_cpus: int = 2, token: str | None = None) -> None:
        self.num_cpus = num_cpus
        self.token = token if token is not None else secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.dashboard_url = ""
        self.gcs_address = ""
        self._lock = threading.Lock()
        # Ray's own start-up chatter, kept for a failing test to show.
        self.log_file = tempfile.TemporaryFile("w+")

    def start(self, timeout: float = 120.0) -> RayCluster:
        env = {
            **os.environ,
            # Ray resolves "127.0.0.1" to the host's outward address unless this is
            # off; with it off every Ray process binds to loopback.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_GCS_SERVER_PORT": str(free_port()),
            "DASHBOARD_METRIC_PORT": str(free_port()),
            "AUTOSCALER_METRIC_PORT": str(free_port()),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token" if self.token else "disabled",
            "RAY_AUTH_TOKEN": self.token,
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "ray",
                str(self.num_cpus),
                str(free_port()),
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            text=True,
        )
        reply = self._read(timeout)
        self.dashboard_url = reply["dashboard_url"]
        self.gcs_address = reply["gcs_address"]
        return self

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(self.process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            self.stop()
            raise RuntimeError(
                f"the Ray child did not answer within {timeout} s:\n{self.log()}"
            )
        reply = json.loads(result[0])
        if "error" in reply:
            raise RuntimeError(f"the Ray child failed: {reply['error']}")
        return reply

    def ask(self, command: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Send one command to the child; return its JSON answer."""
        assert self.process is not None and self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(json.dumps({"command": command, **args}) + "\n")
            self.process.stdin.flush()
            return self._read(timeout)

    def state(self) -> dict[str, Any]:
        """Return ray.nodes(), ray.cluster_resources(), ray.available_resources()."""
        return self.ask("state")

    def log(self) -> str:
        self.log_file.seek(0)
        return self.log_file.read()[-4000:]

    def stop(self, timeout: float = 60.0) -> None:
        """ray.shutdown() in the child, then wait for it; kill it by PID if stuck."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.write(json.dumps({"command": "stop"}) + "\n")
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ray_child(num_cpus: int, dashboard_port: int) -> None:
    """Run in the child: start Ray, then serve commands from stdin."""
    import ray

    try:
        context = ray.init(
            num_cpus=num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            log_to_driver=False,
            logging_level="ERROR",
        )
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    info = context.address_info
    print(
        json.dumps(
            {
                "dashboard_url": f"http://{context.dashboard_url}",
                "gcs_address": info.get("gcs_address", ""),
            }
        ),
        flush=True,
    )

    @ray.remote(num_cpus=1)
    def hold(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @ray.remote(num_cpus=0)
    class Counter:
        def ping(self) -> int:
            return 1

    held = []
    actors = []
    try:
        for line in sys.stdin:
            request = json.loads(line)
            command = request["command"]
            if command == "stop":
                break
            if command == "state":
                reply = {
                    "nodes": ray.nodes(),
                    "cluster_resources": ray.cluster_resources(),
                    "available_resources": ray.available_resources(),
                }
            elif command == "hold":
                # A task that keeps one CPU busy for a while: "used" is then known.
                held.append(hold.remote(request["seconds"]))
                reply = {"held": len(held)}
            elif command == "actor":
                actor = Counter.remote()
                ray.get(actor.ping.remote())
                actors.append(actor)
                reply = {"actors": len(actors)}
            else:
                reply = {"error": f"unknown command {command!r}"}
            print(json.dumps(reply, default=str), flush=True)
    finally:
        ray.shutdown()


class DaskCluster:
    """A distributed.LocalCluster of thread workers, its dashboard on loopback."""

    def __init__(self, n_workers: int = 2, processes: bool = False) -> None:
        self.n_workers = n_workers
        self.processes = processes
        self.cluster = None
        self.client = None
        self.dashboard_url = ""

    def start(self) -> DaskCluster:
        from distributed import Client, LocalCluster

        port = free_port()
        self.cluster = LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=1,
            processes=self.processes,
            host="127.0.0.1",
            # Thread workers would talk over inproc://; tcp is what a real one uses.
            protocol="tcp://",
            scheduler_port=0,
            dashboard_address=f"127.0.0.1:{port}",
            memory_limit="512MiB",
        )
        self.client = Client(self.cluster)
        self.dashboard_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


if __name__ == "__main__":
    if sys.argv[1] == "ray":
        _ray_child(int(sys.argv[2]), int(sys.argv[3]))


def assert_no_traceback(output: str) -> None:
    """Fail on any traceback, except those of Dask's own dashboard server.

    distributed 2026.8's /json/identity.json fails (a tuple key in a worker's
    metrics, which JSON cannot hold) once workers have run tasks; Tornado logs the
    traceback. That is Dask's, not the example's.
    """
    blocks = output.split("Traceback (most recent call last):")
    stopped = output.find("SOLLOL dashboard stopped.")
    for before, block in zip(blocks, blocks[1:], strict=False):
        said = " ".join(before.splitlines()[-2:])  # the log line before it
        if "tornado.application - ERROR" in said:
            continue
        # Once serving has stopped, the cluster closes: a worker process whose
        # heartbeat meets the scheduler already gone logs it with two chained
        # tracebacks (its own process, its own log). Also Dask's, not the example's.
        closing = 0 <= stopped < output.find(block)
        if closing and (
            "Failed to communicate with scheduler during heartbeat" in said
            or "CommClosedError" in block
        ):
            continue
        raise AssertionError(f"a traceback:\n{block[:3000]}")

"""UnifiedDashboard: the dashboard in-process, wired to (and starting) Dask and Ray.

The cluster tests start real ones, through the launcher an operator uses, in a
child process: everything must listen on loopback, and stopping the dashboard must
leave no process of theirs behind.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import require
from sollol import UnifiedDashboard
from tests.clusters import assert_no_traceback, importable
from tests.liveserver import REPO, free_port, wait_for
from tests.processtree import (
    command_line,
    descendants,
    listening_addresses,
    still_running,
)

FRAMEWORK_VARIABLES = (
    "SOLLOL_RAY_DASHBOARD_URL",
    "SOLLOL_DASK_DASHBOARD_URL",
    "SOLLOL_RAY_AUTH_TOKEN",
    "SOLLOL_RAY_PUBLIC_URL",
    "SOLLOL_DASK_PUBLIC_URL",
)


def get_json(url: str) -> Any:
    try:
        response = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def framework_env():
    """Give each test the environment as it was, whatever start_frameworks() set."""
    saved = dict(os.environ)
    for name in FRAMEWORK_VARIABLES:
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


class Dashboard:
    """`UnifiedDashboard(...).run()` in a child process, as an operator's script."""

    def __init__(self, tmp_path: Path, arguments: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = (
            "from sollol import UnifiedDashboard\n"
            f"UnifiedDashboard(dashboard_port={self.port}, {arguments}).run()\n"
        )
        self.log_path = tmp_path / "dashboard.log"
        environment = {
            **os.environ,
            "SOLLOL_DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "SOLLOL_DISCOVER_LOCALHOST": "false",
            "SOLLOL_FRAMEWORK_INTERVAL": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        for name in (*FRAMEWORK_VARIABLES, "DJANGO_SETTINGS_MODULE", "REDIS_URL"):
            if name not in env:
                environment.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=environment,
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_serving(self, timeout: float) -> None:
        def serving() -> bool:
            assert self.process.poll() is None, f"it exited:\n{self.log()}"
            return get_json(self.url + "/api/applications") is not None

        wait_for(serving, timeout, f"the dashboard answers\n{self.log()}")

    def stop(self, sig: int, timeout: float = 90.0) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running {timeout} s after {sig}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def assert_all_on_loopback(pid: int, tree: set[tuple[int, int]]) -> set:
    addresses = listening_addresses({pid} | {child for child, _ in tree})
    assert addresses
    exposed = {a for a in addresses if not ipaddress.ip_address(a[0]).is_loopback}
    assert not exposed, f"listening beyond loopback: {exposed}"
    return addresses


def assert_nothing_left(tree: set[tuple[int, int]]) -> None:
    # Children may take a moment to notice; then nothing of theirs may remain.
    deadline = time.monotonic() + 10
    while still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: command_line(pid) for pid, _ in still_running(tree)}
    assert not left, f"left running: {left}"


def closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


# --------------------------------------------------------------- Dask, for real


@pytest.mark.live
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_it_starts_a_local_dask_cluster_on_loopback_and_stops_it(tmp_path, stop_signal):
    require(importable("distributed"), "enable_dask needs distributed installed")
    from distributed import Client

    dask_port = free_port()
    dashboard = Dashboard(
        tmp_path,
        f"dask_dashboard_port={dask_port}, enable_dask=True, dask_workers=2, "
        "dask_threads_per_worker=1",
    )
    try:
        dashboard.wait_serving(timeout=90)
        assert f"dashboard http://127.0.0.1:{dask_port}/status" in dashboard.log()
        health = requests.get(f"http://127.0.0.1:{dask_port}/health", timeout=5)
        assert health.text == "ok"
        scheduler = next(
            word
            for word in dashboard.log().replace(")", " ").replace(",", " ").split()
            if word.startswith("tcp://")
        )
        with Client(scheduler, timeout=20) as client:
            workers = client.scheduler_info()["workers"]
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        assert len(workers) == 2
        assert {info["host"] for info in workers.values()} == {"127.0.0.1"}
        assert scheduler.startswith("tcp://127.0.0.1:")

        # What the dashboard's API makes of it (the frameworks app collects it).
        def reported():
            body = get_json(dashboard.url + "/api/dask/metrics")
            return body if body and body["status"] == "active" else None

        metrics = wait_for(reported, 30, "/api/dask/metrics says active")
        assert metrics["dashboard_url"] == f"http://127.0.0.1:{dask_port}"
        assert sorted(w["address"] for w in metrics["workers"]) == sorted(workers)

        tree = descendants(dashboard.process.pid)
        worker_processes = [pid for pid, _ in tree if "spawn" in command_line(pid)]
        assert len(worker_processes) >= 2, {p: command_line(p) for p, _ in tree}
        addresses = assert_all_on_loopback(dashboard.process.pid, tree)
        assert ("127.0.0.1", dask_port) in addresses
        assert dashboard.stop(stop_signal) == 0
    finally:
        dashboard.kill()
    assert_no_traceback(dashboard.log())  # but Dask's own at its closing
    assert "SOLLOL dashboard stopped.\nDask: local cluster stopped" in dashboard.log()
    assert_nothing_left(tree)
    assert closed(dask_port)


@pytest.mark.live
def test_it_stops_cleanly_when_stopped_while_the_cluster_starts(tmp_path):
    require(importable("distributed"), "enable_dask needs distributed installed")
    dashboard = Dashboard(
        tmp_path, f"dask_dashboard_port={free_port()}, enable_dask=True, dask_workers=2"
    )
    try:
        # A worker process exists: the cluster is starting, not yet started.
        tree = wait_for(
            lambda: descendants(dashboard.process.pid), 60, "Dask's worker processes"
        )
        assert dashboard.stop(signal.SIGTERM) == 0
    finally:
        dashboard.kill()
    output = dashboard.log()
    assert_no_traceback(output)  # but Dask's own at its closing
    assert "Dask: local cluster stopped" in output
    assert_nothing_left(tree | descendants(dashboard.process.pid))


@pytest.mark.live
def test_it_explains_the_main_guard_a_script_with_dask_needs(tmp_path):
    require(importable("distributed"), "enable_dask needs distributed installed")
    # Dask's worker processes import the script again: unguarded, it would start
    # a dashboard in every worker.
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from sollol import UnifiedDashboard\n"
        f"UnifiedDashboard(dashboard_port={free_port()}, "
        f"dask_dashboard_port={free_port()}, "
        "enable_dask=True, dask_workers=1).run()\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "SOLLOL_DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert 'Put the call under `if __name__ == "__main__":`' in result.stderr


# ---------------------------------------------------------------- Ray, for real


@pytest.mark.live
def test_it_starts_a_local_ray_on_loopback_off_redis_port_and_stops_it(tmp_path):
    require(importable("ray"), "enable_ray needs ray[default] installed")
    ray_port = free_port()
    token = secrets.token_hex(16)
    dashboard = Dashboard(
        tmp_path,
        f"ray_dashboard_port={ray_port}, enable_ray=True, ray_num_cpus=1, "
        f"ray_object_store_memory={100 * 1024 * 1024}",
        # A token of our own, not ~/.ray's; fixed ports of Ray's moved aside so
        # that other Ray instances on this machine cannot collide with this one.
        RAY_AUTH_TOKEN=token,
        DASHBOARD_METRIC_PORT=str(free_port()),
        AUTOSCALER_METRIC_PORT=str(free_port()),
        RAY_USAGE_STATS_ENABLED="0",
    )
    try:
        dashboard.wait_serving(timeout=180)
        assert f"dashboard http://127.0.0.1:{ray_port}" in dashboard.log()
        # Ray protects the cluster with the token; the launcher handed the
        # dashboard the same one, or the collector could not read it.
        version = f"http://127.0.0.1:{ray_port}/api/version"
        assert requests.get(version, timeout=5).status_code == 401
        answer = requests.get(
            version, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert answer.status_code == 200 and "ray_version" in answer.json()

        def reported():
            body = get_json(dashboard.url + "/api/ray/metrics")
            return body if body and body["status"] == "active" else None

        metrics = wait_for(reported, 60, "/api/ray/metrics says active")
        assert metrics["dashboard_url"] == f"http://127.0.0.1:{ray_port}"
        assert metrics["nodes_alive"] == 1

        tree = descendants(dashboard.process.pid)
        names = " ".join(command_line(pid) for pid, _ in tree)
        assert "gcs_server" in names and "raylet" in names, names
        addresses = assert_all_on_loopback(dashboard.process.pid, tree)
        assert ("127.0.0.1", ray_port) in addresses
        # Redis's port stays Redis's: Ray's GCS takes a free one.
        gcs = [pid for pid, _ in tree if "gcs_server" in command_line(pid)]
        gcs_ports = {port for _, port in listening_addresses(set(gcs))}
        assert gcs_ports and 6379 not in gcs_ports
        assert dashboard.stop(signal.SIGTERM) == 0
    finally:
        dashboard.kill()
    assert "Traceback" not in dashboard.log(), dashboard.log()
    assert "Ray: local instance stopped" in dashboard.log()
    assert_nothing_left(tree)
    assert closed(ray_port)


# ------------------------------------------------------- wiring, in this process


def test_it_points_the_dashboard_at_the_framework_ports(framework_env):
    with UnifiedDashboard(ray_dashboard_port=18265, dask_dashboard_port=18787):
        assert os.environ["SOLLOL_RAY_DASHBOARD_URL"] == "http://127.0.0.1:18265"
        assert os.environ["SOLLOL_DASK_DASHBOARD_URL"] == "http://127.0.0.1:18787"


def test_it_reaches_frameworks_on_loopback_when_serving_every_interface(
    framework_env,
):
    with UnifiedDashboard(host="0.0.0.0", dask_dashboard_port=18787):
        assert os.environ["SOLLOL_DASK_DASHBOARD_URL"] == "http://127.0.0.1:18787"


def test_it_keeps_what_the_operator_configured(framework_env):
    os.environ["SOLLOL_DASK_DASHBOARD_URL"] = "http://127.0.0.9:9999"
    with UnifiedDashboard(ray_dashboard_port=None):
        assert os.environ["SOLLOL_DASK_DASHBOARD_URL"] == "http://127.0.0.9:9999"
        assert "SOLLOL_RAY_DASHBOARD_URL" not in os.environ


def test_it_hands_the_public_urls_it_was_given_to_the_dashboard(framework_env):
    os.environ["SOLLOL_DASK_PUBLIC_URL"] = "http://old.example.test:8787"
    dashboard = UnifiedDashboard(
        host="0.0.0.0",
        ray_public_url="https://ray.example.test",
        dask_public_url="http://10.1.2.3:8787",
    )
    with dashboard:
        assert os.environ["SOLLOL_RAY_PUBLIC_URL"] == "https://ray.example.test"
        assert os.environ["SOLLOL_DASK_PUBLIC_URL"] == "http://10.1.2.3:8787"
    with pytest.raises(ValueError, match="dask_public_url"):
        UnifiedDashboard(dask_public_url="10.1.2.3:8787")


def test_it_uses_a_dask_scheduler_already_on_the_port(framework_env, capsys):
    require(importable("distributed"), "enable_dask needs distributed installed")
    from distributed import LocalCluster

    port = free_port()
    with LocalCluster(
        n_workers=1,
        processes=False,
        dashboard_address=f"127.0.0.1:{port}",
    ):
        with UnifiedDashboard(enable_dask=True, dask_dashboard_port=port) as dashboard:
            assert dashboard.dask_cluster is None
            assert os.environ["SOLLOL_DASK_DASHBOARD_URL"] == f"http://127.0.0.1:{port}"
    assert "using the scheduler already serving" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (lambda port: {"enable_dask": True, "dask_dashboard_port": port}, "Dask"),
        (lambda port: {"enable_ray": True, "ray_dashboard_port": port}, "Ray"),
    ],
    ids=["dask", "ray"],
)
def test_it_starts_nothing_on_a_port_something_else_holds(
    framework_env, capsys, options, complaint
):
    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with UnifiedDashboard(**options(port)) as dashboard:
            assert dashboard.dask_cluster is None and not dashboard.ray_started
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    taken = f"port {port} on 127.0.0.1 is taken by something that is not a {complaint}"
    assert taken in err


def test_it_says_what_to_install_when_dask_or_ray_is_missing(tmp_path):
    # As on a machine without them: importing either fails.
    script = textwrap.dedent(
        f"""
        import sys

        class Missing:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("distributed", "ray"):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")

        sys.meta_path.insert(0, Missing())
        from sollol import UnifiedDashboard

        with UnifiedDashboard(
            enable_dask=True, dask_dashboard_port={free_port()},
            enable_ray=True, ray_dashboard_port={free_port()},
        ) as dashboard:
            print("started:", dashboard.dask_cluster, dashboard.ray_started)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "pip install distributed bokeh" in result.stderr
    assert "pip install 'ray[default]'" in result.stderr
    assert "started: None False" in result.stdout


def test_it_imports_without_dask_ray_or_django():
    script = (
        "import sys, sollol; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'django', 'distributed', 'dask', 'ray'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "[]"

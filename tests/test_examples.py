"""The runnable examples, run as a newcomer runs them, so that they never rot.

Each is started as its own process on free loopback ports, checked through the
dashboard's API, then stopped by its PID as Ctrl-C or a service manager would.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import require
from simulator.ollama import running_fleet
from tests.clusters import assert_no_traceback, importable
from tests.liveserver import REPO, free_port, wait_for
from tests.processtree import (
    command_line,
    descendants,
    listening_addresses,
    still_running,
)

pytestmark = pytest.mark.live

DEMO = REPO / "examples" / "unified_dashboard_demo.py"
TRACKING = REPO / "examples" / "dashboard_application_tracking.py"
DEMO_APPS = {"Support Chatbot", "Docs Search", "Nightly Summarizer"}


def api(base: str, path: str) -> Any:
    try:
        response = requests.get(base + path, timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


class Example:
    """One example script in a child process, its output in a file."""

    def __init__(
        self,
        tmp_path: Path,
        script: Path,
        *arguments: str,
        python: str = sys.executable,
        **env: str,
    ):
        """Run script with python; from the checkout (PYTHONPATH, as README and
        `make demo` say) unless env sets PYTHONPATH (to "": an installed client)."""
        self.log_path = tmp_path / f"{script.stem}.log"
        environment = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO),
            **env,
        }
        environment.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            [python, str(script), *arguments],
            cwd=tmp_path,  # not the checkout
            env=environment,
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def running(self) -> bool:
        assert self.process.poll() is None, f"it exited:\n{self.log()}"
        return True

    def stop(self, sig: int, timeout: float = 90.0) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"still running {timeout} s after {sig}:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def assert_nothing_left(tree: set[tuple[int, int]]) -> None:
    deadline = time.monotonic() + 10
    while still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: command_line(pid) for pid, _ in still_running(tree)}
    assert not left, f"left running: {left}"


# ------------------------------------------------------------------------ demo


def test_it_runs_the_demo_with_fleet_apps_logs_traces_and_dask(tmp_path):
    require(importable("distributed"), "the demo's Dask cluster needs distributed")
    port, dask_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    demo = Example(
        tmp_path,
        DEMO,
        *("--port", str(port), "--dask-dashboard-port", str(dask_port)),
        # Free ports: this machine may run Ollama, or another test's fleet.
        *("--ollama-port", "0", "--rpc-port", "0"),
        # No injected faults: a healthy fleet is what this test checks for.
        *("--no-faults", "--seconds", "600"),
    )
    try:
        wait_for(
            lambda: demo.running() and f"SOLLOL demo: open {url}/" in demo.log(),
            90,
            "the demo prints its URL",
        )
        data_dir = Path(re.search(r"Data: (\S+) \(temporary\)", demo.log())[1])
        assert data_dir.is_dir()

        def apps_active():
            body = api(url, "/api/applications")
            apps = {a["name"]: a for a in (body or {}).get("applications", [])}
            ok = set(apps) == DEMO_APPS
            return ok and all(a["status"] == "active" for a in apps.values()) and apps

        apps = wait_for(apps_active, 60, "three demo applications, active")
        ids = {app["app_id"]: name for name, app in apps.items()}

        def fleet_healthy():
            nodes = api(url, "/api/network/nodes")
            backends = api(url, "/api/network/backends")
            return (
                nodes
                and backends
                and [n["status"] for n in nodes["nodes"]] == ["healthy"] * 3
                and [b["status"] for b in backends["backends"]] == ["online"] * 2
                and nodes
            )

        nodes = wait_for(fleet_healthy, 60, "3 healthy nodes and 2 online backends")
        assert all(n["address"].startswith("127.0.0.") for n in nodes["nodes"])

        def every_app_reported():
            metrics = api(url, "/api/metrics?window=5m")
            per_app = {
                row["app_id"]: row for row in (metrics or {}).get("per_application", [])
            }
            return set(ids) <= set(per_app) and metrics

        metrics = wait_for(every_app_reported, 60, "requests from every app")
        assert metrics["totals"]["requests"] >= 3
        assert metrics["totals"]["success_rate"] == 1.0
        assert metrics["totals"]["latency_ms"]["p95"] > 0

        def logs_from_every_app():
            seen = set()
            for app_id in ids:
                body = api(url, f"/api/logs?app_id={app_id}&limit=5")
                if body and body["logs"]:
                    seen.add(app_id)
            return seen == set(ids)

        wait_for(logs_from_every_app, 30, "log lines from every app")

        def rag_trace():
            body = api(url, "/api/traces?service=Docs Search")
            for trace in (body or {}).get("traces", []):
                if trace["root_name"] == "answer question" and trace["span_count"] >= 4:
                    return trace
            return None

        trace = wait_for(rag_trace, 30, "a Docs Search trace: embed, rank, generate")
        assert not trace["error"]

        def dask_active():
            body = api(url, "/api/dask/metrics")
            return body if body and body["status"] == "active" else None

        dask = wait_for(dask_active, 30, "/api/dask/metrics says active")
        assert len(dask["workers"]) == 2
        assert {w["host"] for w in dask["workers"]} == {"127.0.0.1"}

        tree = descendants(demo.process.pid)
        addresses = listening_addresses({demo.process.pid} | {p for p, _ in tree})
        assert ("127.0.0.1", port) in addresses
        assert all(ipaddress.ip_address(a).is_loopback for a, _ in addresses)
        assert demo.stop(signal.SIGTERM) == 0
    finally:
        demo.kill()
    output = demo.log()
    assert "Demo stopped." in output
    assert_no_traceback(output)
    assert_nothing_left(tree)
    assert not data_dir.exists()


# -------------------------------------------------------------- tracking example


@pytest.fixture
def dashboard(live_server_factory):
    server = live_server_factory(SOLLOL_DISCOVER_LOCALHOST="false")
    server.start()
    return server


def test_it_runs_the_application_example_until_interrupted(tmp_path, dashboard):
    with running_fleet(1, base="127.0.0.2", port=0, seed=5) as fleet:
        node = fleet.nodes[0]
        example = Example(
            tmp_path,
            TRACKING,
            dashboard.url,
            *("--ollama", node.url, "--requests", "0", "--interval", "0.2"),
        )
        try:

            def listed():
                example.running()
                body = api(dashboard.url, "/api/applications")
                for app in (body or {}).get("applications", []):
                    if app["name"] == "Example App":
                        return app
                return None

            app = wait_for(listed, 30, "the example registers")
            assert app["router_type"] == "DirectOllama"

            def metadata_grew():
                current = listed()
                processed = (
                    (current or {}).get("metadata", {}).get("requests_processed")
                )
                return processed is not None and processed >= 3 and current

            app = wait_for(metadata_grew, 30, "metadata updated while it runs")
            assert app["metadata"]["failures"] == 0
            app_id = app["app_id"]

            def reported():
                metrics = api(dashboard.url, "/api/metrics?window=5m")
                for row in (metrics or {}).get("per_application", []):
                    if row["app_id"] == app_id and row["requests"] >= 3:
                        return row
                return None

            row = wait_for(reported, 30, "its requests in /api/metrics")
            assert row["success_rate"] == 1.0
            assert node.processed  # the requests did reach the node

            logs = wait_for(
                lambda: (api(dashboard.url, f"/api/logs?app_id={app_id}") or {}).get(
                    "logs"
                ),
                30,
                "its log lines",
            )
            assert any("answered in" in line["message"] for line in logs)

            traces = wait_for(
                lambda: (
                    api(dashboard.url, "/api/traces?service=Example App") or {}
                ).get("traces"),
                30,
                "its traces",
            )
            assert traces[0]["root_name"] == "generate"

            # It told the dashboard which node it uses: the dashboard watches it.
            nodes = api(dashboard.url, "/api/network/nodes")["nodes"]
            assert node.url in {n["url"] for n in nodes}

            tree = descendants(example.process.pid)
            assert example.stop(signal.SIGINT) == 0
        finally:
            example.kill()
    output = example.log()
    assert "Example App stopped." in output
    assert "Traceback" not in output
    assert_nothing_left(tree)
    # It unregistered on the way out.
    names = {a["name"] for a in api(dashboard.url, "/api/applications")["applications"]}
    assert "Example App" not in names


@pytest.fixture(scope="module")
def client_installed(tmp_path_factory) -> str:
    """A clean venv with the client's wheel installed, and requests (what the
    wheel depends on) beside it; return its python. Built from a copy of the
    project's pyproject.toml and sollol/ (the build writes into its source tree),
    offline: nothing but loopback is contacted."""
    import requests as requests_module

    root = tmp_path_factory.mktemp("client-wheel")
    source = root / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copytree(REPO / "sollol", source / "sollol", ignore=IGNORED)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index"]
    build += ["--no-build-isolation", "-q", "-w", str(root / "dist"), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=120)
    [wheel] = (root / "dist").glob("sollol_dashboard_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("/METADATA")))
    assert {name.split("/")[0] for name in names} == {
        "sollol",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    requires = [
        line for line in metadata.decode().splitlines() if line.startswith("Requires")
    ]
    assert requires == ["Requires-Python: >=3.11", "Requires-Dist: requests>=2.28"]
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "--no-index", "--no-deps", "-q"]
    subprocess.run([*install, str(wheel)], check=True, timeout=120)
    # requests and its own dependencies, as they are in the test's environment.
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    beside = Path(requests_module.__file__).parent.parent
    for package in ("requests", "urllib3", "idna", "charset_normalizer", "certifi"):
        (site / package).symlink_to(beside / package)
    return python


IGNORED = shutil.ignore_patterns("__pycache__")


def test_the_client_wheel_installs_elsewhere_and_runs_the_example(
    tmp_path, dashboard, client_installed
):
    """The client as an application has it: pip-installed from its wheel, in a
    venv without this checkout, Django or anything but requests; the example
    reports its failed requests and exits by itself."""
    nowhere = f"http://127.0.0.2:{free_port('127.0.0.2')}"  # nothing listens there
    where = subprocess.run(
        [client_installed, "-c", "import sollol, django"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    )
    assert "No module named 'django'" in where.stderr  # nothing but the client
    example = Example(
        tmp_path,
        TRACKING,
        dashboard.url,
        *("--ollama", nowhere, "--requests", "3", "--interval", "0.1"),
        *("--model", "llama3.2:3b", "--name", "Offline App"),
        python=client_installed,
        PYTHONPATH="",
    )
    try:
        assert example.process.wait(60) == 0
    finally:
        example.kill()
    output = example.log()
    assert "Offline App stopped." in output
    assert "Traceback" not in output

    # Sent before it exited: the dashboard has them although the app is gone.
    metrics = api(dashboard.url, "/api/metrics?window=5m")
    assert metrics["totals"]["requests"] == 3
    assert metrics["totals"]["errors"] == 3
    body = api(dashboard.url, "/api/logs?level=WARNING")
    assert sum("failed after" in line["message"] for line in body["logs"]) == 3
    names = {a["name"] for a in api(dashboard.url, "/api/applications")["applications"]}
    assert "Offline App" not in names

"""Real Ray and Dask clusters on loopback, read by the collectors and the live API.

One Ray head (a child process, token authentication on, GCS on a free port) and
one Dask LocalCluster (2 thread workers) serve the whole module; the numbers the
dashboard reports are checked against the clusters' own Python APIs.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import threading
import time

import pytest
import requests
from websockets.sync.client import connect

from conftest import require
from frameworks import collectors
from tests.clusters import DaskCluster, RayCluster, importable

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def ray_cluster():
    require(importable("ray"), "ray is not installed (pip install 'ray[default]')")
    cluster = RayCluster(num_cpus=2).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def dask_cluster():
    require(
        importable("distributed") and importable("bokeh"),
        "distributed and bokeh are not installed (pip install distributed bokeh)",
    )
    cluster = DaskCluster(n_workers=2).start()
    yield cluster
    cluster.stop()


# The workers are threads of this process: they import this module by name and so
# wait on this very Event.
RELEASE = threading.Event()


def wait_for_release(seconds: float) -> bool:
    return RELEASE.wait(seconds)


def fail() -> None:
    raise ValueError("a task that fails")


@pytest.fixture(scope="module")
def dask_busy(dask_cluster):
    """One task running until the module ends, one that failed."""
    client = dask_cluster.client
    RELEASE.clear()
    running = client.submit(wait_for_release, 120, key="frameworks-running")
    failed = client.submit(fail, key="frameworks-failed")
    deadline = time.monotonic() + 30
    while failed.status != "error" and time.monotonic() < deadline:
        time.sleep(0.05)
    yield running, failed
    RELEASE.set()
    running.result(timeout=30)


def eventually(probe, *, timeout: float = 30.0, interval: float = 0.5):
    """Call probe() until it returns something true; return that, or the last."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def collect_ray(cluster: RayCluster, token: str | None = None):
    token = cluster.token if token is None else token
    return asyncio.run(
        collectors.collect_ray(cluster.dashboard_url, token=token, timeout=5)
    )


def collect_dask(cluster: DaskCluster):
    return asyncio.run(collectors.collect_dask(cluster.dashboard_url, timeout=5))


def test_ray_numbers_match_rays_own_api(ray_cluster):
    ray_cluster.ask("hold", seconds=600)  # one CPU busy for the module
    ray_cluster.ask("actor")

    def settled():
        result = collect_ray(ray_cluster)
        tasks = result.data.get("tasks") or {}
        busy = (result.data.get("resources") or {}).get("CPU", {}).get("used")
        running = tasks.get("by_state", {}).get("RUNNING", 0)
        return result if busy == 1.0 and running >= 1 else None

    result = eventually(settled, timeout=60)
    assert result, f"Ray never showed the held CPU: {collect_ray(ray_cluster)}"
    state = ray_cluster.state()
    [ray_node] = state["nodes"]
    total = state["cluster_resources"]
    available = state["available_resources"]

    assert result.status == "active"
    assert result.data["ray_version"] == importlib.metadata.version("ray")
    [node] = result.data["nodes"]
    assert node["node_id"] == ray_node["NodeID"]
    assert node["ip"] == ray_node["NodeManagerAddress"] == "127.0.0.1"
    assert node["hostname"] == ray_node["NodeManagerHostname"]
    assert node["state"] == "ALIVE" and ray_node["Alive"] is True
    assert node["is_head"] is True
    assert 0 <= node["cpu_percent"] <= 100 * (node["cpus_logical"] or 1)
    assert 0 < node["memory_used"] < node["memory_total"]
    resources = result.data["resources"]
    assert resources["CPU"] == {
        "used": total["CPU"] - available["CPU"],
        "total": total["CPU"],
    }
    assert resources["CPU"]["total"] == 2.0
    assert resources["memory"]["total"] == total["memory"]
    assert resources["object_store_memory"]["total"] == total["object_store_memory"]
    assert node["resources"]["CPU"] == resources["CPU"]  # the only node
    assert (
        node["resources"]["object_store_memory"]["total"]
        == (total["object_store_memory"])
    )
    assert result.data["jobs"]["running"] >= 1  # the driver holding the cluster
    assert result.data["actors"]["by_state"].get("ALIVE", 0) >= 1
    assert result.warnings == []


def test_ray_without_the_right_token_is_auth_required(ray_cluster):
    missing = collect_ray(ray_cluster, token="")
    wrong = collect_ray(ray_cluster, token="not-the-token")

    assert missing.status == "auth_required"
    assert "HTTP 401" in missing.error
    assert wrong.status == "auth_required"
    assert "HTTP 403" in wrong.error


def test_dask_numbers_match_the_schedulers_own_api(dask_cluster, dask_busy):
    def settled():
        result = collect_dask(dask_cluster)
        tasks = result.data.get("tasks") or {}
        ok = tasks.get("processing") == 1 and tasks.get("erred") == 1
        return result if ok else None

    result = eventually(settled, timeout=30)
    assert result, f"Dask never showed the tasks: {collect_dask(dask_cluster)}"
    info = dask_cluster.client.scheduler_info()
    states = dask_cluster.client.run_on_scheduler(
        lambda dask_scheduler: sorted(ts.state for ts in dask_scheduler.tasks.values())
    )

    assert result.status == "active"
    workers = {w["address"]: w for w in result.data["workers"]}
    assert set(workers) == set(info["workers"])
    for address, expected in info["workers"].items():
        assert workers[address]["nthreads"] == expected["nthreads"] == 1
        assert workers[address]["memory_limit"] == expected["memory_limit"]
        assert workers[address]["status"] == "running"
        assert workers[address]["memory"] > 0
    assert result.data["resources"]["workers"] == len(info["workers"]) == 2
    assert result.data["resources"]["threads"] == 2
    assert result.data["resources"]["memory"]["total"] == 2 * 512 * 1024**2
    assert states == ["erred", "processing"]
    assert result.warnings == []  # /health answered "ok"


def short_task(x: int) -> int:
    time.sleep(0.01)
    return x


def test_a_busy_dask_cluster_stays_active_with_its_workers(dask_cluster, dask_busy):
    # distributed 2026.8 answers 500 on /json/identity.json whenever a worker's
    # last heartbeat followed finished tasks: on a busy cluster, most of the time.
    client = dask_cluster.client
    stop = threading.Event()

    def load():
        while not stop.is_set():
            client.gather(client.map(short_task, range(20), pure=False))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        results = []
        for _ in range(20):
            results.append(collect_dask(dask_cluster))
            time.sleep(0.2)
    finally:
        stop.set()
        loader.join(30)
    info = client.scheduler_info()

    assert [r.status for r in results] == ["active"] * 20, [r.error for r in results]
    for result in results:
        assert {w["address"] for w in result.data["workers"]} == set(info["workers"])
        assert result.data["resources"]["threads"] == 2
        assert result.data["resources"]["memory"]["total"] == 2 * 512 * 1024**2
    fell_back = [r for r in results if any("workers.html" in w for w in r.warnings)]
    assert fell_back, "identity.json never failed: is the distributed bug fixed?"


def test_dask_dashboard_page_is_served_for_the_link(dask_cluster):
    # bokeh is what serves Dask's own dashboard, the page the link opens.
    response = requests.get(dask_cluster.dashboard_url + "/status", timeout=10)

    assert response.status_code == 200
    assert "bokeh" in response.text.lower()


def wait_for_status(server, path: str, status: str, timeout: float = 60.0) -> dict:
    def probe():
        body = requests.get(server.url + path, timeout=5).json()
        return body if body["status"] == status else None

    body = eventually(probe, timeout=timeout)
    assert body, requests.get(server.url + path, timeout=5).json()
    return body


def test_the_live_api_reports_both_clusters_and_streams_the_changes(
    live_server_factory, ray_cluster, dask_cluster, dask_busy
):
    server = live_server_factory(
        SOLLOL_RAY_DASHBOARD_URL=ray_cluster.dashboard_url,
        SOLLOL_RAY_AUTH_TOKEN=ray_cluster.token,
        SOLLOL_RAY_PUBLIC_URL="http://ray.example.internal:8265",
        SOLLOL_DASK_DASHBOARD_URL=dask_cluster.dashboard_url,
        SOLLOL_FRAMEWORK_INTERVAL="1",
        SOLLOL_DISCOVER_LOCALHOST="false",
    )
    server.start()

    ray = wait_for_status(server, "/api/ray/metrics", "active")
    dask = wait_for_status(server, "/api/dask/metrics", "active")

    state = ray_cluster.state()
    assert ray["dashboard_url"] == ray_cluster.dashboard_url
    assert ray["public_url"] == "http://ray.example.internal:8265"
    assert ray["resources"]["CPU"]["total"] == state["cluster_resources"]["CPU"]
    assert [n["node_id"] for n in ray["nodes"]] == [n["NodeID"] for n in state["nodes"]]
    assert ray["error"] is None and ray["collected_at"] > 0
    info = dask_cluster.client.scheduler_info()
    assert sorted(w["address"] for w in dask["workers"]) == sorted(info["workers"])
    assert dask["public_url"] == dask_cluster.dashboard_url
    assert dask["tasks"]["erred"] == 1
    # Sparklines fill up as collections go on.
    later = eventually(
        lambda: (
            b
            if len(
                (b := requests.get(server.url + "/api/dask/metrics").json())["history"]
            )
            >= 2
            else None
        ),
        timeout=15,
    )
    assert later and all(p["status"] == "active" for p in later["history"])
    assert later["history"][-1]["workers"] == 2

    ws_url = server.url.replace("http://", "ws://") + "/ws/frameworks?since=0"
    with connect(ws_url, open_timeout=5) as ws:
        events = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
    assert {(e["framework"], e["old_status"], e["new_status"]) for e in events} == {
        ("ray", None, "active"),
        ("dask", None, "active"),
    }
    assert all(e["type"] == "framework_status_change" for e in events)


def test_the_live_api_says_auth_required_for_a_wrong_ray_token(
    live_server_factory, ray_cluster
):
    server = live_server_factory(
        SOLLOL_RAY_DASHBOARD_URL=ray_cluster.dashboard_url,
        SOLLOL_RAY_AUTH_TOKEN="not-the-token",
        SOLLOL_FRAMEWORK_INTERVAL="1",
        SOLLOL_DISCOVER_LOCALHOST="false",
    )
    server.start()

    body = wait_for_status(server, "/api/ray/metrics", "auth_required")

    assert "HTTP 403" in body["error"]
    assert body["nodes"] is None
    dask = requests.get(server.url + "/api/dask/metrics", timeout=5).json()
    assert dask["status"] == "not_configured"

"""Collectors against real local HTTP servers: recorded answers, refusals, silence.

The real Ray and Dask clusters are in tests/test_frameworks_real.py; here the far
side is a small server on 127.0.0.1 answering what Ray 2.60 and distributed
2026.8 answered, or answering badly.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time

import pytest

from frameworks import collectors
from frameworks.tests.fakes import (
    DATA,
    FakeDashboard,
    Reply,
    SilentServer,
    closed_port_url,
    ray_gpu_routes,
    recorded,
)


async def test_it_reads_a_ray_dashboard(servers):
    ray = servers(FakeDashboard.ray())

    result = await collectors.collect_ray(ray.url, token="", timeout=2)

    assert result.status == "active", result.error
    assert result.warnings == []
    data = result.data
    assert data["ray_version"] == "2.60.0"
    [node] = data["nodes"]
    assert node["state"] == "ALIVE" and node["is_head"] is True
    assert node["ip"] == "127.0.0.1" and node["hostname"] == "vm"
    assert node["cpu_percent"] == 67.0
    assert node["memory_total"] == 25276502016
    assert node["memory_used"] == 1691983872
    assert node["resources"]["CPU"] == {"used": 0.0, "total": 2.0}
    assert node["resources"]["object_store_memory"]["total"] == 7334193561.0
    assert data["resources"]["CPU"] == {"used": 0.0, "total": 2.0}
    assert data["resources"]["object_store_memory"]["total"] == 7334193561.0
    assert "GPU" not in data["resources"]
    assert data["jobs"]["running"] == 1
    assert data["jobs"]["running_jobs"][0]["type"] == "DRIVER"
    assert data["tasks"] == {"total": 6, "by_state": {"FINISHED": 6}}
    assert data["actors"] == {"total": 1, "by_state": {"ALIVE": 1}}
    assert result.sample["cpu_total"] == 2.0


async def test_it_reports_gpus_with_utilisation_and_memory(servers):
    ray = servers(FakeDashboard.ray(ray_gpu_routes()))

    result = await collectors.collect_ray(ray.url, token="", timeout=2)

    [gpu] = result.data["nodes"][0]["gpus"]
    assert gpu["name"] == "NVIDIA A10G"
    assert gpu["utilization_percent"] == 87
    assert (gpu["memory_used_mb"], gpu["memory_total_mb"]) == (20480, 23028)
    assert result.data["resources"]["GPU"] == {"used": 1.0, "total": 1.0}


async def test_it_sends_the_ray_token_when_one_is_set(servers):
    ray = servers(FakeDashboard.ray())

    await collectors.collect_ray(ray.url, token="s3cret", timeout=2)

    assert ray.requests
    assert all(h.get("Authorization") == "Bearer s3cret" for _, h in ray.requests)


@pytest.mark.parametrize("status", [401, 403])
async def test_it_calls_a_refusal_auth_required_not_down(servers, status):
    ray = servers(FakeDashboard.ray())
    ray.refuse(status)
    dask = servers(FakeDashboard.dask())
    dask.refuse(status)

    ray_result = await collectors.collect_ray(ray.url, token="wrong", timeout=2)
    dask_result = await collectors.collect_dask(dask.url, timeout=2)

    assert ray_result.status == "auth_required"
    assert f"HTTP {status}" in ray_result.error
    assert dask_result.status == "auth_required"


async def test_it_calls_a_closed_port_unreachable():
    url = closed_port_url()

    ray_result = await collectors.collect_ray(url, token="", timeout=2)
    dask_result = await collectors.collect_dask(url, timeout=2)

    assert ray_result.status == dask_result.status == "unreachable"
    assert "cannot connect" in ray_result.error
    # One refused connection is said once, not once per endpoint.
    assert ray_result.error.count("cannot connect") == 1


async def test_it_gives_up_on_a_silent_dashboard_at_the_deadline(servers):
    silent = servers(SilentServer())
    started = time.monotonic()

    # Each GET gets 0.75 of the deadline; the 0.5 s between them leaves room
    # for a loaded machine, so the error names the endpoint, not the deadline.
    result = await collectors.collect_ray(silent.url, token="", timeout=2.0)

    assert result.status == "unreachable"
    assert "/api/version: no answer within 1.5 s" in result.error
    assert time.monotonic() - started < 3.0


async def test_a_slow_optional_endpoint_costs_a_warning_not_the_cluster(servers):
    ray = servers(FakeDashboard.ray({"/api/v0/tasks/summarize": Reply(delay=4)}))

    result = await collectors.collect_ray(ray.url, token="", timeout=2.0)

    assert result.status == "active"
    assert result.data["tasks"] is None and result.data["nodes_total"] == 1
    assert result.warnings == ["/api/v0/tasks/summarize: no answer within 1.5 s"]


async def test_a_hung_ray_does_not_hold_up_dask(servers):
    silent = servers(SilentServer())
    dask = servers(FakeDashboard.dask())

    ray_result, dask_result = await collectors.collect(
        silent.url, "", dask.url, timeout=3.0
    )

    assert ray_result.status == "unreachable"
    assert dask_result.status == "active"
    # Dask answered long before Ray's per-GET timeout of 2.25 s ran out.
    assert dask_result.duration_ms < 1500


async def test_a_web_server_that_is_not_ray_is_unreachable_with_the_reason(servers):
    other = servers(
        FakeDashboard({"/api/version": Reply(200, "<html>hello</html>", "text/html")})
    )

    result = await collectors.collect_ray(other.url, token="", timeout=2)

    assert result.status == "unreachable"
    assert "/api/version: the reply is not JSON" in result.error
    assert "/api/cluster_status: HTTP 404" in result.error


async def test_optional_endpoints_failing_leave_nulls_and_warnings(servers):
    ray = servers(
        FakeDashboard.ray(
            {
                "/api/v0/tasks/summarize": Reply(
                    500, "Internal Server Error", "text/plain"
                ),
                "/api/jobs/": Reply(200, "not json", "text/plain"),
            }
        )
    )

    result = await collectors.collect_ray(ray.url, token="", timeout=2)

    assert result.status == "active"
    assert result.data["tasks"] is None and result.data["jobs"] is None
    assert result.data["nodes_total"] == 1
    assert any("/api/v0/tasks/summarize: HTTP 500" in w for w in result.warnings)
    assert any("/api/jobs/: the reply is not JSON" in w for w in result.warnings)


def _mangle(value, replacement):
    """Replace every leaf of a JSON document (a renamed or retyped field)."""
    if isinstance(value, dict):
        return {k: _mangle(v, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_mangle(v, replacement) for v in value]
    return replacement


@pytest.mark.parametrize("replacement", [None, "x", [], {}, True, -1, "\x00\ud800"])
async def test_odd_fields_become_nulls_never_an_exception(servers, replacement):
    ray_routes = {
        path: Reply(body=_mangle(copy.deepcopy(recorded(name)), replacement))
        for path, name in {
            "/api/version": "ray_version.json",
            "/api/cluster_status": "ray_cluster_status.json",
            "/nodes?view=summary": "ray_nodes.json",
            "/api/v0/tasks/summarize": "ray_tasks.json",
            "/api/v0/actors/summarize": "ray_actors.json",
            "/api/jobs/": "ray_jobs.json",
        }.items()
    }
    dask_routes = {
        "/json/identity.json": Reply(
            body=_mangle(recorded("dask_identity.json"), replacement)
        ),
        "/json/counts.json": Reply(
            body=_mangle(recorded("dask_counts.json"), replacement)
        ),
    }
    ray = servers(FakeDashboard(ray_routes))
    dask = servers(FakeDashboard(dask_routes))

    results = await collectors.collect(ray.url, "", dask.url, timeout=2)

    for result in results:
        assert result.status == "active", result.error
        # What is stored must be storable JSON on any database.
        text = json.dumps(result.data) + json.dumps(result.sample)
        assert "\\u0000" not in text and "\\ud800" not in text


async def test_optional_json_of_the_wrong_shape_is_tolerated(servers):
    wrong = Reply(body=[1, 2])
    ray = servers(
        FakeDashboard.ray(
            {path: wrong for path in list(collectors.RAY_PATHS.values())[2:]}
        )
    )

    result = await collectors.collect_ray(ray.url, token="", timeout=2)

    assert result.status == "active"
    assert result.data["ray_version"] == "2.60.0"
    assert result.data["nodes"] is None and result.data["tasks"] is None


async def test_core_json_of_the_wrong_shape_is_not_a_cluster(servers):
    ray = servers(FakeDashboard.ray({"/api/version": Reply(body=[1, 2])}))

    result = await collectors.collect_ray(ray.url, token="", timeout=2)

    assert result.status == "unreachable"
    assert result.error == "/api/version: not a ray dashboard's answer"


async def test_a_body_over_the_limit_is_refused_not_read(servers, monkeypatch):
    monkeypatch.setattr(collectors, "MAX_BODY", 4000)
    big = {"summary": "x" * 10000}
    ray = servers(FakeDashboard.ray({"/nodes?view=summary": Reply(body=big)}))

    result = await collectors.collect_ray(ray.url, token="", timeout=2)

    assert result.status == "active"
    assert result.data["nodes"] is None
    assert any("over 4000" in w for w in result.warnings)


async def test_it_reads_a_dask_scheduler(servers):
    dask = servers(FakeDashboard.dask())

    result = await collectors.collect_dask(dask.url, timeout=2)

    assert result.status == "active", result.error
    workers = result.data["workers"]
    assert [w["address"] for w in workers] == [
        "tcp://127.0.0.1:34053",
        "tcp://127.0.0.1:42631",
    ]
    assert all(w["nthreads"] == 1 and w["memory_limit"] == 536870912 for w in workers)
    assert all(w["status"] == "running" for w in workers)
    assert result.data["resources"]["threads"] == 2
    assert result.data["resources"]["memory"]["total"] == 1073741824
    assert result.data["tasks"]["erred"] == 1
    assert result.data["dask_version"] is None
    assert result.warnings == []


async def test_dask_workers_are_also_its_nodes_in_rays_shape(servers):
    dask = servers(FakeDashboard.dask())

    result = await collectors.collect_dask(dask.url, timeout=2)

    nodes = result.data["nodes"]
    assert [n["node_id"] for n in nodes] == [
        w["address"] for w in result.data["workers"]
    ]
    busy, idle = nodes  # the recorded scheduler: one task running on the first
    assert busy["state"] == idle["state"] == "ALIVE"
    assert busy["ip"] == "127.0.0.1" and busy["is_head"] is False
    assert busy["resources"]["CPU"] == {"used": 1, "total": 1}
    assert idle["resources"]["CPU"] == {"used": 0, "total": 1}
    assert busy["memory_total"] == 536870912
    assert busy["memory_used"] + busy["memory_available"] == busy["memory_total"]
    assert busy["cpu_percent"] == 4.0
    assert busy["gpus"] is None and busy["cpus_physical"] is None  # not known


async def test_when_identity_fails_the_workers_come_from_the_workers_page(servers):
    # distributed 2026.8 answers 500 on /json/identity.json after tasks ran.
    page = (DATA / "dask_workers.html").read_bytes()
    dask = servers(
        FakeDashboard.dask(
            {
                "/json/identity.json": Reply(
                    500, "500: Internal Server Error", "text/html"
                ),
                "/info/main/workers.html": Reply(200, page, "text/html"),
            }
        )
    )

    result = await collectors.collect_dask(dask.url, timeout=2)

    assert result.status == "active"
    workers = result.data["workers"]
    assert [w["address"] for w in workers] == [
        "tcp://127.0.0.1:45359",
        "tcp://127.0.0.1:45899",
    ]
    assert all(w["nthreads"] == 1 for w in workers)
    assert all(w["memory_limit"] == 536870912 for w in workers)
    assert all(w["memory"] > 0 and w["host"] == "127.0.0.1" for w in workers)
    assert all(w["status"] is None and w["cpu_percent"] is None for w in workers)
    assert result.data["resources"]["threads"] == 2
    assert result.data["resources"]["memory"]["total"] == 2 * 536870912
    assert result.data["tasks"]["erred"] == 1  # counts.json still read
    assert any("workers.html" in w for w in result.warnings)


async def test_when_identity_and_the_page_fail_workers_are_unknown_not_zero(servers):
    dask = servers(
        FakeDashboard.dask({"/json/identity.json": Reply(500, "oops", "text/plain")})
    )

    result = await collectors.collect_dask(dask.url, timeout=2)

    assert result.status == "active"
    assert result.data["workers"] is None and result.data["workers_total"] is None
    assert result.data["resources"]["workers"] == 2  # from counts.json
    assert result.data["resources"]["memory"]["used"] is None


async def test_a_dask_scheduler_whose_health_is_not_ok_is_active_with_a_warning(
    servers,
):
    dask = servers(FakeDashboard.dask({"/health": Reply(503, "closing", "text/plain")}))

    result = await collectors.collect_dask(dask.url, timeout=2)

    assert result.status == "active"
    assert result.warnings == ["/health: HTTP 503 closing"]


async def test_it_collects_both_at_once_not_one_after_the_other(servers):
    slow = Reply(delay=0.4)
    ray = servers(FakeDashboard.ray())
    dask = servers(FakeDashboard.dask())
    for server in (ray, dask):
        for reply in server.routes.values():
            reply.delay = slow.delay
    started = time.monotonic()

    results = await collectors.collect(ray.url, "", dask.url, timeout=3)

    assert [r.status for r in results] == ["active", "active"]
    # Eight endpoints of 0.4 s each, all at once: well under their 3.2 s sum.
    assert time.monotonic() - started < 1.6


def test_num_reads_what_ray_and_dask_send():
    assert collectors.num(3) == 3
    assert collectors.num("7334524108") == 7334524108
    assert collectors.num("1.5") == 1.5
    assert collectors.num(True) is None
    assert collectors.num(float("nan")) is None
    assert collectors.num("NaN") is None
    assert collectors.num("abc") is None


def test_nothing_is_collected_when_nothing_is_configured():
    assert asyncio.run(collectors.collect("", "", "", timeout=1)) == []

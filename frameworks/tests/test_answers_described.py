"""GET /api/ray/metrics and /api/dask/metrics answer exactly what the OpenAPI
schema describes (strictly: no undescribed field, no missing one, no other type),
whatever the clusters were found to be."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from frameworks import services
from frameworks.tests.fakes import DATA, FakeDashboard, Reply, ray_gpu_routes
from tests.openapi import assert_described

pytestmark = pytest.mark.django_db

PATHS = {"ray": "/api/ray/metrics", "dask": "/api/dask/metrics"}


def described(client) -> dict[str, dict]:
    """Return {kind: answer} once each is what the schema says it is."""
    answers = {}
    for kind, path in PATHS.items():
        response = client.get(path)
        assert response.status_code == 200
        assert_described(path, "GET", response.json())
        answers[kind] = response.json()
    return answers


def collect(settings, ray, dask, *, now: dt.datetime) -> None:
    settings.SOLLOL_RAY_DASHBOARD_URL = ray.url
    settings.SOLLOL_DASK_DASHBOARD_URL = dask.url
    services.collect_frameworks(now=now)


def statuses(answers: dict[str, dict]) -> dict[str, str]:
    return {kind: answer["status"] for kind, answer in answers.items()}


def test_not_configured_and_pending_answer_as_described(client, settings):
    settings.SOLLOL_RAY_DASHBOARD_URL = settings.SOLLOL_DASK_DASHBOARD_URL = ""
    assert set(statuses(described(client)).values()) == {"not_configured"}
    settings.SOLLOL_RAY_DASHBOARD_URL = "http://127.0.0.1:8265"
    settings.SOLLOL_DASK_DASHBOARD_URL = "http://127.0.0.1:8787"
    assert set(statuses(described(client)).values()) == {"pending"}


def test_active_then_refused_and_gone_answer_as_described(client, settings, servers):
    ray = servers(FakeDashboard.ray(ray_gpu_routes()))
    dask = servers(FakeDashboard.dask())
    collect(settings, ray, dask, now=timezone.now() - dt.timedelta(hours=1))
    answers = described(client)
    assert statuses(answers) == {"ray": "active", "dask": "active"}
    assert answers["ray"]["stale"] and answers["ray"]["nodes"][0]["gpus"]
    assert answers["dask"]["workers_total"] == 2

    ray.refuse(401)
    dask.close()
    collect(settings, ray, dask, now=timezone.now())
    answers = described(client)
    assert statuses(answers) == {"ray": "auth_required", "dask": "unreachable"}
    assert all(answer["error"] for answer in answers.values())
    assert [p["status"] for p in answers["dask"]["history"]] == [
        "active",
        "unreachable",
    ]


def test_clusters_that_answer_in_part_answer_as_described(client, settings, servers):
    ray = servers(
        FakeDashboard.ray(
            {
                "/api/v0/tasks/summarize": Reply(500, "Internal Server Error"),
                "/api/jobs/": Reply(200, "not json", "text/plain"),
            }
        )
    )
    # distributed 2026.8 answers 500 on /json/identity.json after tasks ran: the
    # workers come from its workers page, without status and CPU.
    page = (DATA / "dask_workers.html").read_bytes()
    broken = Reply(500, "500: Internal Server Error", "text/html")
    dask = servers(
        FakeDashboard.dask(
            {
                "/json/identity.json": broken,
                "/info/main/workers.html": Reply(200, page, "text/html"),
            }
        )
    )
    collect(settings, ray, dask, now=timezone.now())
    answers = described(client)
    assert answers["ray"]["jobs"] is None and answers["ray"]["warnings"]
    assert answers["dask"]["workers"][0]["status"] is None

    # Nor the page: the workers are not known.
    dask.routes["/info/main/workers.html"] = broken
    collect(settings, ray, dask, now=timezone.now())
    assert described(client)["dask"]["workers"] is None

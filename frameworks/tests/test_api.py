"""GET /api/ray/metrics and /api/dask/metrics through the Django test client."""

from __future__ import annotations

import pytest
from django.utils import timezone

from frameworks import services
from frameworks.collectors import Collection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("/api/ray/metrics", {"ray_version", "nodes", "resources", "jobs", "tasks"}),
        ("/api/dask/metrics", {"dask_version", "workers", "resources", "tasks"}),
    ],
)
def test_it_answers_200_with_the_envelope_when_nothing_is_configured(
    client, settings, path, keys
):
    settings.SOLLOL_RAY_DASHBOARD_URL = settings.SOLLOL_DASK_DASHBOARD_URL = ""

    response = client.get(path)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "not_configured"
    common = {"dashboard_url", "public_url", "collected_at", "error", "history"}
    assert common | keys <= set(body)


def test_it_answers_from_the_last_snapshot(client, settings):
    settings.SOLLOL_DASK_DASHBOARD_URL = "http://127.0.0.1:8787"
    settings.SOLLOL_DASK_PUBLIC_URL = "http://dask.example.internal:8787"
    services.record_collection(
        Collection(
            "dask",
            "active",
            "http://127.0.0.1:8787",
            data={"workers": [{"address": "tcp://127.0.0.1:1", "nthreads": 4}]},
            sample={"workers": 1},
        ),
        now=timezone.now(),
    )

    body = client.get("/api/dask/metrics").json()

    assert body["status"] == "active"
    assert body["workers"] == [{"address": "tcp://127.0.0.1:1", "nthreads": 4}]
    assert body["public_url"] == "http://dask.example.internal:8787"
    assert body["history"][0]["workers"] == 1


def test_it_links_a_loopback_cluster_on_the_host_the_browser_asked(client, settings):
    settings.ALLOWED_HOSTS = ["10.1.2.3"]
    settings.SOLLOL_DASK_DASHBOARD_URL = "http://127.0.0.1:8787"
    settings.SOLLOL_DASK_PUBLIC_URL = ""

    body = client.get("/api/dask/metrics", HTTP_HOST="10.1.2.3:8080").json()

    assert body["public_url"] == "http://10.1.2.3:8787"
    assert body["dashboard_url"] == "http://127.0.0.1:8787"  # where it is collected


def test_other_methods_get_a_json_405(client):
    response = client.post("/api/ray/metrics", {}, content_type="application/json")

    assert response.status_code == 405
    assert "error" in response.json()

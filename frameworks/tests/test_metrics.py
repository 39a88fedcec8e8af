"""Ray and Dask in /api/prometheus: up, status and collection time of each."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from activity import prometheus
from frameworks import services
from frameworks.collectors import Collection

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def samples() -> dict[tuple[str, tuple], float]:
    text = prometheus.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("sollol_framework")
        for sample in family.samples
    }


def test_it_shows_each_watched_framework_up_or_down_with_its_status():
    services.record_collection(
        Collection("ray", "active", "http://127.0.0.1:8265", duration_ms=12.0), now=T0
    )
    services.record_collection(
        Collection("dask", "unreachable", "http://127.0.0.1:8787", duration_ms=2000.0),
        now=T0,
    )
    found = samples()
    assert found[("sollol_framework_up", (("framework", "ray"),))] == 1
    assert found[("sollol_framework_up", (("framework", "dask"),))] == 0
    dask_status = {
        labels[1][1]: value
        for (name, labels), value in found.items()
        if name == "sollol_framework_status" and labels[0] == ("framework", "dask")
    }
    assert dask_status["unreachable"] == 1 and dask_status["active"] == 0
    assert sum(dask_status.values()) == 1
    duration = "sollol_framework_collection_duration_seconds"
    assert found[(duration, (("framework", "ray"),))] == pytest.approx(0.012)


def test_it_says_nothing_of_a_framework_it_does_not_watch():
    assert samples() == {}

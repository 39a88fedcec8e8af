"""GET /api/prometheus joins every app's collector; read back as Prometheus reads it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from activity import prometheus
from activity.metrics import (
    LATENCY_BUCKETS,
    RequestReport,
    parse_activity,
    record_requests,
)
from activity.models import EventCount, RequestRecord, RequestTotals
from applications.models import Application
from conftest import require
from core.jsonio import storable
from network.choices import Source
from network.models import OllamaNode, RpcBackend
from network.probes import NodeProbe
from network.services import lifecycle, recording

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
GIB = 1 << 30
PROMTOOL = Path(os.environ.get("SOLLOL_PROMTOOL", "/usr/bin/promtool"))
HOSTILE = 'evil"model\\name\nwith} a newline,le="0.1"'


def scrape() -> dict:
    """Return {family name: family} of a scrape, as Prometheus' parser reads it."""
    text = prometheus.exposition().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict, name: str, **labels) -> float:
    """Return the value of the one sample called name with exactly these labels."""
    found = [
        sample.value
        for family in families.values()
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def probe(node: OllamaNode, now: dt.datetime, loaded=None) -> None:
    if loaded is None:
        result = NodeProbe(ok=False, answered=False, error="connection refused")
    else:
        result = NodeProbe(
            ok=True,
            answered=True,
            latency_ms=12.5,
            version="0.12.6",
            loaded_models=loaded,
            disk_models=[],
        )
    recording.record_node_probes([(node.id, result)], now=now)


def node(address: str) -> OllamaNode:
    lifecycle.ensure_nodes([address], source=Source.CONFIG, now=T0)
    return OllamaNode.objects.get(host=address.split(":")[0])


def loaded_model(name: str, size_vram: int, size: int | None = None) -> dict:
    return {
        "name": name,
        "model": name,
        "size": size or size_vram,
        "size_vram": size_vram,
        "digest": "a" * 64,
        "expires_at": "2026-11-26T12:05:00Z",
    }


def test_it_shows_a_healthy_node_up_with_its_vram_and_models():
    healthy = node("127.0.0.2:11434")
    probe(
        healthy,
        T0,
        loaded=[
            loaded_model("llama3.2:3b", 3 * GIB),
            loaded_model("nomic-embed-text", GIB // 2, GIB),
        ],
    )
    families = scrape()
    labels = {"node": "127.0.0.2:11434"}
    assert value(families, "sollol_node_up", **labels) == 1
    assert value(families, "sollol_node_status", **labels, status="healthy") == 1
    assert value(families, "sollol_node_status", **labels, status="offline") == 0
    assert value(families, "sollol_node_probe_latency_seconds", **labels) == 0.0125
    assert value(families, "sollol_node_loaded_models", **labels) == 2
    assert value(families, "sollol_node_vram_used_bytes", **labels) == 3.5 * GIB
    model_vram = "sollol_node_model_vram_bytes"
    assert value(families, model_vram, **labels, model="llama3.2:3b") == 3 * GIB
    assert value(families, model_vram, **labels, model="nomic-embed-text") == GIB / 2
    size = "sollol_node_model_size_bytes"
    assert value(families, size, **labels, model="nomic-embed-text") == GIB
    info = "sollol_node_info"
    assert value(
        families,
        info,
        **labels,
        url="http://127.0.0.2:11434",
        kind="ollama",
        version="0.12.6",
    )


def test_it_shows_an_offline_node_down_with_nothing_loaded_claimed():
    offline = node("127.0.0.3:11434")
    probe(offline, T0, loaded=[loaded_model("llama3.2:3b", 3 * GIB)])
    for seconds in (5, 10, 15):
        probe(offline, T0 + dt.timedelta(seconds=seconds))
    assert OllamaNode.objects.get().status == "offline"
    families = scrape()
    labels = {"node": "127.0.0.3:11434"}
    assert value(families, "sollol_node_up", **labels) == 0
    statuses = {
        s.labels["status"]: s.value for s in families["sollol_node_status"].samples
    }
    assert statuses == {
        "unknown": 0,
        "healthy": 0,
        "degraded": 0,
        "unhealthy": 0,
        "offline": 1,
        "rejected": 0,
        "flapping": 0,
        "unauthorized": 0,
        "not_found": 0,
    }
    # What an unreachable node holds is unknown: no series rather than stale ones.
    for name in (
        "sollol_node_vram_used_bytes",
        "sollol_node_model_vram_bytes",
        "sollol_node_loaded_models",
        "sollol_node_probe_latency_seconds",
    ):
        assert families[name].samples == []


def test_it_counts_applications_by_status_not_one_series_per_app():
    now = timezone.now()
    for index, status in enumerate(["active"] * 3 + ["stale"] * 2):
        Application.objects.create(
            app_id=f"app-{index}",
            name=f"App {index}",
            status=status,
            start_time=now,
            last_heartbeat=now,
            stale_after=now + dt.timedelta(seconds=30),
            remove_after=now + dt.timedelta(seconds=60),
        )
    family = scrape()["sollol_applications"]
    assert {s.labels["status"]: s.value for s in family.samples} == {
        "active": 3,
        "stale": 2,
    }


def test_it_says_zero_applications_rather_than_nothing():
    family = scrape()["sollol_applications"]
    assert {s.labels["status"]: s.value for s in family.samples} == {
        "active": 0,
        "stale": 0,
    }


def test_it_exports_router_latency_as_a_consistent_cumulative_histogram():
    # Per bound of LATENCY_BUCKETS, then beyond the last: 2 + 3 + 1 + 1 = 7 requests.
    buckets = [2, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    RequestTotals.objects.create(
        node="127.0.0.2:11434",
        model="llama3.2:3b",
        requests=7,
        errors=1,
        latency_seconds_sum=200.5,
        prompt_tokens=700,
        completion_tokens=350,
        buckets=buckets,
    )
    families = scrape()
    labels = {"node": "127.0.0.2:11434", "model": "llama3.2:3b"}
    assert value(families, "sollol_router_requests_total", **labels) == 7
    assert value(families, "sollol_router_request_errors_total", **labels) == 1
    tokens = "sollol_router_tokens_total"
    assert value(families, tokens, **labels, type="prompt") == 700
    assert value(families, tokens, **labels, type="completion") == 350

    histogram = families["sollol_router_request_duration_seconds"]
    assert histogram.type == "histogram"
    cumulative = {
        s.labels["le"]: s.value
        for s in histogram.samples
        if s.name.endswith("_bucket") and s.labels["node"] == labels["node"]
    }
    bounds = sorted(cumulative, key=float)
    assert [float(le) for le in bounds] == [*LATENCY_BUCKETS, float("inf")]
    counts = [cumulative[le] for le in bounds]
    assert counts == sorted(counts)  # cumulative never falls
    assert cumulative["0.05"] == 2
    assert cumulative["0.1"] == 5
    assert cumulative["1.0"] == 6
    assert cumulative["120.0"] == 6
    name = "sollol_router_request_duration_seconds"
    assert cumulative["+Inf"] == value(families, name + "_count", **labels) == 7
    assert value(families, name + "_sum", **labels) == 200.5


def test_it_reads_a_bucket_list_of_another_length_without_losing_requests():
    RequestTotals.objects.create(node="a:1", model="m", requests=4, buckets=[1, 1])
    RequestTotals.objects.create(node="b:1", model="m", requests=20, buckets=[1] * 20)
    families = scrape()
    name = "sollol_router_request_duration_seconds"
    short, long = {"node": "a:1", "model": "m"}, {"node": "b:1", "model": "m"}
    assert value(families, name + "_count", **short) == 2
    assert value(families, name + "_bucket", **short, le="+Inf") == 2
    assert value(families, name + "_bucket", **short, le="120.0") == 2
    # 11 bounds; the 9 entries past them all count as beyond the last one.
    assert value(families, name + "_bucket", **long, le="120.0") == 11
    assert value(families, name + "_count", **long) == 20


def test_it_counts_events_by_stream_and_type_from_the_counters():
    EventCount.objects.create(stream="nodes", type="status_change", count=41)
    EventCount.objects.create(stream="ollama_activity", type="model_loaded", count=7)
    families = scrape()
    events = families["sollol_events"]
    assert events.type == "counter"
    assert {
        (s.labels["stream"], s.labels["type"]): s.value for s in events.samples
    } == {("nodes", "status_change"): 41, ("ollama_activity", "model_loaded"): 7}
    assert {s.name for s in events.samples} == {"sollol_events_total"}


def test_it_shows_backends_with_status_and_device_memory():
    RpcBackend.objects.create(
        address="127.0.0.4:50052",
        host="127.0.0.4",
        port=50052,
        source=Source.CONFIG,
        status="online",
        protocol="3.0.0",
        devices=[
            {"index": 0, "free": 20 * GIB, "total": 24 * GIB},
            {"index": 1, "free": "lots", "total": 8 * GIB},  # a backend's nonsense
        ],
        latency_ms=0.8,
        created_at=T0,
    )
    RpcBackend.objects.create(
        address="127.0.0.5:50052",
        host="127.0.0.5",
        port=50052,
        source=Source.CONFIG,
        status="offline",
        created_at=T0,
    )
    families = scrape()
    online, offline = {"backend": "127.0.0.4:50052"}, {"backend": "127.0.0.5:50052"}
    assert value(families, "sollol_backend_up", **online) == 1
    assert value(families, "sollol_backend_up", **offline) == 0
    assert value(families, "sollol_backend_status", **online, status="online") == 1
    assert value(families, "sollol_backend_status", **offline, status="offline") == 1
    assert value(families, "sollol_backend_status", **offline, status="online") == 0
    free = "sollol_backend_device_memory_free_bytes"
    total = "sollol_backend_device_memory_total_bytes"
    assert value(families, free, **online, device="0") == 20 * GIB
    assert value(families, total, **online, device="0") == 24 * GIB
    assert value(families, total, **online, device="1") == 8 * GIB
    assert [s.labels for s in families[free].samples] == [{**online, "device": "0"}]
    assert value(families, "sollol_backend_probe_latency_seconds", **online) == 0.0008


def test_it_escapes_hostile_label_values_from_the_network():
    healthy = node("127.0.0.2:11434")
    probe(
        healthy,
        T0,
        loaded=[
            loaded_model(HOSTILE, GIB),
            loaded_model("unicode-✓-模型", 2 * GIB),
            loaded_model(storable("lone-\ud800-surrogate"), 3 * GIB),
            {"name": "bad-sizes", "size": "huge", "size_vram": True},
        ],
    )
    RequestTotals.objects.create(
        node='127.0.0.2:11434"} 1\nsollol_fake 1', model=HOSTILE, requests=3
    )
    families = scrape()
    assert "sollol_fake" not in families
    vram = "sollol_node_model_vram_bytes"
    labels = {"node": "127.0.0.2:11434"}
    assert value(families, vram, **labels, model=HOSTILE) == GIB
    assert value(families, vram, **labels, model="unicode-✓-模型") == 2 * GIB
    assert value(families, vram, **labels, model="lone-\ufffd-surrogate") == 3 * GIB
    assert value(families, vram, **labels, model="bad-sizes") == 0
    assert value(families, "sollol_node_loaded_models", **labels) == 4
    injected = '127.0.0.2:11434"} 1\nsollol_fake 1'
    requests = "sollol_router_requests_total"
    assert value(families, requests, node=injected, model=HOSTILE) == 3


def test_it_serves_the_text_format_with_its_exact_content_type(client):
    node("127.0.0.2:11434")
    response = client.get("/api/prometheus")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {
        f.name: f for f in text_string_to_metric_families(response.content.decode())
    }
    assert value(families, "sollol_node_up", node="127.0.0.2:11434") == 0
    assert value(
        families, "sollol_node_status", node="127.0.0.2:11434", status="unknown"
    )


def test_it_refuses_writes_to_the_scrape_endpoint_in_json(client):
    response = client.post("/api/prometheus", "{}", content_type="application/json")
    assert response.status_code == 405
    assert response.json() == {"error": "method POST not allowed"}
    assert client.get("/api/prometheus/nope").json() == {"error": "no such endpoint"}


def test_it_serves_its_own_http_metrics_at_metrics(client):
    client.get("/api/network/health")
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {
        f.name: f for f in text_string_to_metric_families(response.content.decode())
    }
    by_view = families["django_http_requests_total_by_view_transport_method"]
    assert any(
        s.labels["view"] == "network-health" and s.value >= 1 for s in by_view.samples
    )


def gateway_request(**fields) -> RequestReport:
    base = {
        "node": "127.0.0.2:11434",
        "model": "llama3.2:3b",
        "latency_ms": 40.0,
        "ok": True,
        "source": RequestRecord.Source.GATEWAY,
        "endpoint": "chat",
        "status_code": 200,
        "prompt_tokens": 10,
        "completion_tokens": 20,
    }
    return RequestReport(**{**base, **fields})


def test_it_counts_gateway_requests_by_status_with_a_latency_histogram_and_tokens():
    # Reported requests are the routers' families, not the gateway's.
    reported = parse_activity(
        {"node": "127.0.0.2:11434", "model": "llama3.2:3b", "latency_ms": 1.0}
    )
    through_gateway = [
        gateway_request(latency_ms=4.0),  # ≤ 5 ms
        gateway_request(latency_ms=250.0),  # on the 0.25 s bound: in it
        gateway_request(latency_ms=130_000.0, prompt_tokens=None),  # beyond all
        gateway_request(
            status_code=503, ok=False, latency_ms=2.0, completion_tokens=None
        ),
        gateway_request(model=HOSTILE, status_code=404, ok=False),
    ]
    record_requests(through_gateway + reported, now=timezone.now())
    families = scrape()
    labels = {"node": "127.0.0.2:11434", "model": "llama3.2:3b"}
    total = "sollol_gateway_requests_total"
    assert value(families, total, **labels, status="200") == 3
    assert value(families, total, **labels, status="503") == 1
    assert value(families, total, node="127.0.0.2:11434", model=HOSTILE, status="404")
    assert families["sollol_gateway_requests"].type == "counter"

    name = "sollol_gateway_request_duration_seconds"
    assert families[name].type == "histogram"
    cumulative = {
        s.labels["le"]: s.value
        for s in families[name].samples
        if s.name == name + "_bucket" and s.labels["model"] == labels["model"]
    }
    bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
              60.0, 120.0, float("inf")]  # fmt: skip
    assert [float(le) for le in cumulative] == bounds
    assert (cumulative["0.005"], cumulative["0.025"], cumulative["0.1"]) == (2, 2, 2)
    assert (cumulative["0.25"], cumulative["120.0"], cumulative["+Inf"]) == (3, 3, 4)
    assert value(families, name + "_count", **labels) == 4
    assert value(families, name + "_sum", **labels) == pytest.approx(130.256)
    assert value(families, "sollol_gateway_prompt_tokens_total", **labels) == 30
    completion = "sollol_gateway_completion_tokens_total"
    assert value(families, completion, **labels) == 60


def test_promtool_finds_the_gateway_families_valid():
    require(PROMTOOL.exists(), f"{PROMTOOL} is not installed (Debian: prometheus)")
    record_requests(
        [gateway_request(), gateway_request(status_code=500, ok=False)],
        now=timezone.now(),
    )
    text = prometheus.exposition().decode()
    gateway = "".join(
        line + "\n"
        for line in text.splitlines()
        if line.removeprefix("# HELP ")
        .removeprefix("# TYPE ")
        .startswith("sollol_gateway_")
    )
    assert "sollol_gateway_request_duration_seconds_bucket" in gateway
    checked = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=gateway,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # not even a lint warning

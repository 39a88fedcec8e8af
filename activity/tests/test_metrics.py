"""Reported router requests: ingest, totals, model_processing events, /api/metrics."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from channels.testing import HttpCommunicator
from django.test import override_settings
from django.utils import timezone

from activity import metrics
from activity.models import Event, RequestRecord, RequestTotals
from network import services as network
from network.probes import NodeProbe
from sollol_site.asgi import application

HOST = [(b"host", b"127.0.0.1:8080")]


async def post(path: str, body, headers=()) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    communicator = HttpCommunicator(
        application, "POST", path, body=raw, headers=[*HOST, *headers]
    )
    response = await communicator.get_response(timeout=10)
    return response["status"], json.loads(response["body"])


def report(**fields) -> metrics.RequestReport:
    base = {"node": "127.0.0.2:11434", "model": "llama3.2:3b", "latency_ms": 100.0}
    return metrics.parse_activity({**base, **fields})[0]


@pytest.mark.django_db
def test_it_says_null_not_zero_when_nothing_was_reported(client):
    body = client.get("/api/metrics").json()
    assert body["window_seconds"] == 300
    assert body["totals"]["requests"] == 0
    assert body["totals"]["success_rate"] is None
    assert body["totals"]["latency_ms"]["p99"] is None
    assert body["totals"]["tokens_per_second"] is None
    assert "no requests" in body["note"]
    assert body["per_node"] == []


@pytest.mark.django_db
def test_it_computes_percentiles_success_and_tokens_per_node_model_and_app(client):
    now = timezone.now()
    reports = [
        report(latency_ms=float(ms), completion_tokens=50, app_id="router-a")
        for ms in range(1, 101)  # 1 … 100 ms on node 2
    ]
    reports += [
        report(node="http://127.0.0.3:11434", model="qwen", latency_ms=1000.0, ok=False)
    ]
    metrics.record_requests(reports, now=now)
    body = client.get("/api/metrics?window=1m").json()
    totals = body["totals"]
    assert totals["requests"] == 101 and totals["errors"] == 1
    assert totals["success_rate"] == round(100 / 101, 4)
    nodes = {entry["node"]: entry for entry in body["per_node"]}
    two = nodes["127.0.0.2:11434"]
    assert two["latency_ms"]["p50"] == 50.5
    assert two["latency_ms"]["p99"] == 99.01
    assert two["success_rate"] == 1.0
    # 5,000 tokens in 5.05 s of request time.
    assert two["tokens_per_second"] == round(5000 / 5.05, 2)
    assert nodes["127.0.0.3:11434"]["success_rate"] == 0.0  # named as host:port
    assert nodes["127.0.0.3:11434"]["tokens_per_second"] is None
    models = {entry["model"] for entry in body["per_model"]}
    assert models == {"llama3.2:3b", "qwen"}
    apps = {entry["app_id"]: entry["requests"] for entry in body["per_application"]}
    assert apps == {"router-a": 100, "": 1}


@pytest.mark.django_db
def test_the_window_leaves_older_requests_out(client):
    now = timezone.now()
    metrics.record_requests([report()], now=now - dt.timedelta(minutes=10))
    metrics.record_requests([report(latency_ms=7.0)], now=now)
    assert client.get("/api/metrics").json()["totals"]["requests"] == 1
    assert client.get("/api/metrics?window=1h").json()["totals"]["requests"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize("window", ["5 minutes", "-1m", "0", "8d", "1e9"])
def test_it_refuses_a_window_it_cannot_read(client, window):
    response = client.get("/api/metrics", {"window": window})
    assert response.status_code == 400
    assert "window" in response.json()["error"]


@pytest.mark.django_db
def test_totals_keep_a_histogram_that_pruning_never_lowers():
    now = timezone.now()
    metrics.record_requests(
        [report(latency_ms=ms) for ms in (10, 100, 100, 3000)]
        + [report(latency_ms=500000, ok=False)],
        now=now,
    )
    metrics.prune_requests(now=now, max_age=3600, max_count=0)
    assert not RequestRecord.objects.exists()
    totals = RequestTotals.objects.get()
    assert (totals.requests, totals.errors) == (5, 1)
    assert sum(totals.buckets) == 5
    assert totals.buckets[0] == 1  # 10 ms ≤ 0.05 s
    assert totals.buckets[1] == 2  # 100 ms ≤ 0.1 s (le is inclusive)
    assert totals.buckets[6] == 1  # 3 s ≤ 5 s
    assert totals.buckets[-1] == 1  # 500 s: beyond every bound
    assert totals.latency_seconds_sum == pytest.approx(503.21)


@pytest.mark.django_db
def test_a_report_becomes_one_processing_event_per_node_and_model():
    now = timezone.now()
    [node] = network.ensure_nodes(["127.0.0.2:11434"], source="config", now=now)
    loaded = [{"name": "llama3.2:3b", "size": 3 * 2**30, "size_vram": 2576980378}]
    network.record_node_probes(
        [
            (
                node.id,
                NodeProbe(ok=True, answered=True, latency_ms=1.0, loaded_models=loaded),
            )
        ],
        now=now,
    )
    metrics.record_requests([report(app_id="a"), report(ok=False, app_id="b")], now=now)
    [event] = Event.objects.filter(type="model_processing")
    message = event.as_message()
    assert message["node"] == "127.0.0.2:11434"
    assert message["model"] == "llama3.2:3b"
    assert message["vram_gb"] == 2.4
    assert message["requests"] == 2 and message["errors"] == 1
    assert message["app_ids"] == ["a", "b"]
    assert message["message"].startswith(
        "🔄 Processing on 127.0.0.2:11434: llama3.2:3b (VRAM: 2.40GB; 2 requests"
    )


@pytest.mark.django_db(transaction=True)
async def test_it_takes_reports_on_the_lean_lane():
    status, body = await post(
        "/api/activity",
        {
            "app_id": "router-1",
            "requests": [
                {"node": "127.0.0.2:11434", "model": "m", "latency_ms": 12.5},
                {
                    "node": "127.0.0.2:11434",
                    "model": "m",
                    "latency_ms": 30,
                    "ok": False,
                },
            ],
        },
    )
    assert (status, body) == (200, {"status": "ok", "accepted": 2})
    rows = [r async for r in RequestRecord.objects.order_by("id")]
    assert [(r.app_id, r.latency_ms, r.ok) for r in rows] == [
        ("router-1", 12.5, True),
        ("router-1", 30.0, False),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"node": "n", "model": "m"}',
        b'{"node": "n", "model": "m", "latency_ms": NaN}',
        b'{"node": "n", "model": "m", "latency_ms": -1}',
        b'{"node": "n", "model": "m", "latency_ms": 1, "ok": "yes"}',
        b'{"node": 5, "model": "m", "latency_ms": 1}',
        b'{"node": "n\\u0000", "model": "m", "latency_ms": 1}',
        b'{"requests": {"node": "n"}}',
        b'{"requests": [{"latency_ms": 1, "completion_tokens": -3}]}',
        b'{"requests": [{"latency_ms": 1, "timestamp": 1e300}]}',
    ],
)
async def test_it_refuses_bad_reports_with_a_json_400(body):
    status, answer = await post("/api/activity", body)
    assert status == 400 and answer["error"]
    assert not await RequestRecord.objects.aexists()


@pytest.mark.django_db(transaction=True)
async def test_reports_need_the_token_when_one_is_set():
    with override_settings(SOLLOL_API_TOKENS=["s3cret"]):
        good = {"node": "n", "model": "m", "latency_ms": 1}
        assert (await post("/api/activity", good))[0] == 401
        bad = [(b"authorization", b"Bearer nope")]
        assert (await post("/api/activity", good, bad))[0] == 403
        ok = [(b"authorization", b"Bearer s3cret")]
        assert (await post("/api/activity", good, ok))[0] == 200

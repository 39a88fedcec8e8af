"""Reported router requests: ingest, totals, model_processing events, /api/metrics."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from channels.testing import HttpCommunicator
from django.test import override_settings
from django.utils import timezone

from activity import metrics
from activity.models import RequestRecord, RequestTotals
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
@pytest.mark.parametrize("window", ["5 minutes", "-1m", "0", "31d", "1e9"])
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


# --- the window as a time series -----------------------------------------------------

# On a minute's edge, so a 5 min window in 5 buckets starts on an edge too.
NOON = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def at(seconds_before_noon: float, **fields) -> metrics.RequestReport:
    finished = NOON - dt.timedelta(seconds=seconds_before_noon)
    return report(timestamp=finished.timestamp(), **fields)


@pytest.mark.django_db
def test_the_series_cuts_the_window_into_buckets_with_null_where_none_were_reported():
    metrics.record_requests(
        [
            at(250, latency_ms=40.0),
            at(20, latency_ms=100.0),
            at(10, latency_ms=300.0, ok=False),
        ],
        now=NOON,
    )
    body = metrics.window_metrics(window=300, now=NOON, buckets=5)
    assert body["bucket_seconds"] == 60
    series = body["series"]
    assert [(b["start"], b["end"]) for b in series] == [
        (NOON.timestamp() - 300 + 60 * i, NOON.timestamp() - 240 + 60 * i)
        for i in range(5)
    ]
    assert [b["requests"] for b in series] == [1, 0, 0, 0, 2]
    assert [b["errors"] for b in series] == [0, 0, 0, 0, 1]
    assert series[0]["latency_ms"] == {"p50": 40.0, "p95": 40.0, "p99": 40.0}
    assert series[4]["latency_ms"] == {"p50": 200.0, "p95": 290.0, "p99": 298.0}
    # No requests is no latency: null, never an invented 0.
    for empty in series[1:4]:
        assert empty["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert sum(b["requests"] for b in series) == body["totals"]["requests"]


@pytest.mark.django_db
def test_the_series_keeps_to_the_window_edges_and_keeps_its_buckets_edges():
    now = NOON + dt.timedelta(seconds=30)  # half way into a 60 s bucket
    since = now - dt.timedelta(seconds=300)
    metrics.record_requests(
        [
            report(timestamp=since.timestamp(), latency_ms=1.0),  # just outside
            report(timestamp=since.timestamp() + 0.001, latency_ms=2.0),
            report(timestamp=(NOON - dt.timedelta(seconds=240)).timestamp()),  # edge
            report(timestamp=now.timestamp(), latency_ms=9.0),  # just inside
        ],
        now=now,
    )
    body = metrics.window_metrics(window=300, now=now, buckets=5)
    series = body["series"]
    # Cut at the window's edges: half a bucket first, half a bucket last.
    assert len(series) == 6
    assert series[0]["start"] == since.timestamp()
    assert series[0]["end"] == (NOON - dt.timedelta(seconds=240)).timestamp()
    assert series[-1]["start"] == NOON.timestamp()
    assert series[-1]["end"] == now.timestamp()
    assert all(b["end"] - b["start"] == 60 for b in series[1:-1])
    assert [b["requests"] for b in series] == [2, 0, 0, 0, 0, 1]
    assert series[0]["latency_ms"]["p50"] == 51.0  # 2 ms and the 100 ms on the edge
    assert series[-1]["latency_ms"]["p99"] == 9.0
    assert body["totals"]["requests"] == 3
    # Ten seconds later the buckets in the middle have the same edges.
    later = metrics.window_metrics(
        window=300, now=now + dt.timedelta(seconds=10), buckets=5
    )
    assert [b["start"] for b in later["series"][1:-1]] == [
        b["start"] for b in series[1:-1]
    ]


@pytest.mark.django_db
def test_the_api_sends_the_series_over_the_window_it_was_asked_for(client):
    metrics.record_requests([report(latency_ms=12.0)], now=timezone.now())
    body = client.get("/api/metrics").json()
    assert len(body["series"]) in (30, 31)  # the default
    assert body["bucket_seconds"] == 10
    assert body["series"][0]["start"] == body["since"]
    assert body["series"][-1]["end"] == body["until"]
    assert sum(b["requests"] for b in body["series"]) == 1
    assert body["series"][-1]["latency_ms"]["p50"] == 12.0
    hour = client.get("/api/metrics?window=1h&buckets=12").json()
    assert hour["bucket_seconds"] == 300 and len(hour["series"]) in (12, 13)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "buckets=0",
        "buckets=-3",
        "buckets=ten",
        "buckets=2.5",
        "buckets=501",
        "window=10ms&buckets=5",  # not a window: the window's message
        "window=0.01&buckets=11",  # buckets under 1 ms
    ],
)
def test_it_refuses_buckets_it_cannot_cut_with_a_json_400(client, query):
    response = client.get(f"/api/metrics?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "window" in query or "buckets" in response.json()["error"]


@pytest.mark.django_db
def test_the_schema_declares_the_buckets_parameter(client):
    schema = client.get("/api/schema/?format=json").json()
    parameters = {
        p["name"]: p for p in schema["paths"]["/api/metrics"]["get"]["parameters"]
    }
    assert parameters["buckets"]["schema"]["type"] == "integer"
    assert parameters["buckets"]["in"] == "query"
    assert "window" in parameters


@pytest.mark.django_db(transaction=True)
async def test_a_metrics_sample_tells_viewers_the_time_and_the_newest_request():
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    origin = [(b"origin", b"http://127.0.0.1:8080")]
    asked = WebsocketCommunicator(
        application, "/ws/ollama_activity?samples=1", headers=origin
    )
    plain = WebsocketCommunicator(application, "/ws/ollama_activity", headers=origin)
    assert (await asked.connect(timeout=5))[0] and (await plain.connect(timeout=5))[0]
    now = timezone.now()
    await database_sync_to_async(metrics.publish_metrics_sample)(now=now)
    message = await asked.receive_json_from(timeout=5)
    assert message == {
        "type": "samples",
        "metrics": {"at": now.timestamp(), "last_request": None},
    }
    finished = now - dt.timedelta(seconds=3)
    await database_sync_to_async(metrics.record_requests)(
        [report(node="", model="", timestamp=finished.timestamp())], now=now
    )
    await database_sync_to_async(metrics.publish_metrics_sample)(now=now)
    message = await asked.receive_json_from(timeout=5)
    assert message["metrics"]["last_request"] == finished.timestamp()
    # Samples are for who asked: the plain stream keeps sending events only.
    assert await plain.receive_nothing(timeout=0.3)
    await asked.disconnect()
    await plain.disconnect()

"""The activity API answers exactly what its OpenAPI schema describes (strictly:
no undescribed field, no missing one, no other type), in each of its variants;
and GET /api/traces pages as every long list does."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from activity import history, logs, metrics, streams
from activity.history import Point
from activity.services import NewEvent, record_events
from activity.tests.test_rollups import gateway_request, reported_request
from activity.tests.test_traces import CHILD, GRANDCHILD, LOST, ROOT, SIBLING, span
from tests.openapi import assert_described

pytestmark = pytest.mark.django_db


def described(client, path: str) -> dict:
    """GET path, check its answer against the schema, and return it."""
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.content)
    body = answer.json()
    assert_described(path, "GET", body)
    return body


def post(client, path: str, body) -> dict:
    answer = client.post(path, json.dumps(body), content_type="application/json")
    assert answer.status_code in (200, 201), (path, answer.content)
    assert_described(path, "POST", answer.json(), answer.status_code)
    return answer.json()


def test_metrics_answer_as_described_empty_exact_rolled_up_and_filtered(client):
    empty = described(client, "/api/metrics?window=5m&buckets=5")
    assert empty["totals"]["latency_ms"]["p50"] is None
    assert "no requests" in empty["note"]
    assert empty["series"][0]["latency_ms"]["p99"] is None

    now = timezone.now()
    earlier = now - dt.timedelta(minutes=30)
    metrics.record_requests([reported_request(earlier, model="m")], now=now)
    metrics.record_requests(
        [
            reported_request(now, app_id="router-a", completion_tokens=30),
            gateway_request(now, ok=False, status_code=502, latency_ms=3000.0),
            gateway_request(now, ttft_ms=40.0, completion_tokens=12),
        ],
        now=now,
    )
    exact = described(client, "/api/metrics?window=1m&buckets=6")
    assert (exact["answered_from"], exact["resolution_seconds"]) == ("requests", None)
    assert {entry["app_id"] for entry in exact["per_application"]} == {"", "router-a"}
    assert exact["totals"]["completion_tokens"] == 42
    day = described(client, "/api/metrics?window=24h&buckets=24")
    assert (day["answered_from"], day["resolution_seconds"]) == ("rollups", 60)
    month = described(client, "/api/metrics?window=30d")
    assert (month["answered_from"], month["resolution_seconds"]) == ("rollups", 3600)
    assert month["totals"]["requests"] == 4
    filtered = described(
        client,
        "/api/metrics?window=24h&source=gateway&node=127.0.0.2:11434"
        "&model=llama3.2:3b&app_id=",
    )
    assert filtered["filters"] == {
        "source": "gateway",
        "node": "127.0.0.2:11434",
        "model": "llama3.2:3b",
    }
    assert filtered["totals"]["requests"] == 2
    nobody = described(client, "/api/metrics?window=5m&model=nobody")
    assert nobody["totals"]["success_rate"] is None and nobody["per_node"] == []

    # The count prune took the hour's first requests: the minutes answer, and say so.
    metrics.prune_requests(now=now, max_age=7200, max_count=1)
    pruned = described(client, "/api/metrics?window=1h")
    assert pruned["answered_from"] == "rollups"
    assert "SOLLOL_REQUEST_RETENTION_COUNT" in pruned["note"]


def test_logs_answer_as_described_with_their_total(client):
    now = timezone.now()
    logs.record_logs(
        logs.parse_logs(
            [
                {"message": "starting", "app_id": "a"},
                {"message": "disk full", "level": "WARNING", "extra": {"disk": 91}},
                {"message": "died", "level": "ERROR", "logger": "n", "app_id": "b"},
                {"message": "retry", "level": 15, "extra": {"try": {"n": 2}}},
            ]
        ),
        now=now,
    )
    every = described(client, "/api/logs")
    assert (every["total"], every["count"], every["limit"]) == (4, 4, 200)
    first = every["logs"][0]["id"]
    warnings = described(client, "/api/logs?level=WARNING&limit=1")
    assert [line["message"] for line in warnings["logs"]] == ["died"]
    assert (warnings["total"], warnings["limit"]) == (2, 1)
    after = described(client, f"/api/logs?since={first}&limit=2")
    assert [line["message"] for line in after["logs"]] == ["disk full", "died"]
    assert after["total"] == 4 and after["last_id"] == after["logs"][-1]["id"]
    before = described(client, f"/api/logs?before={first}")
    assert before["logs"] == [] and before["last_id"] is None
    nothing_new = described(client, f"/api/logs?since={every['last_id']}&q=x")
    assert nothing_new["last_id"] == every["last_id"] and nothing_new["total"] == 0


def test_events_answer_as_described_with_the_fields_of_their_type(client):
    record_events(
        [
            NewEvent(
                streams.MODEL_ACTIVITY,
                "model_processing",
                "Processing on 127.0.0.2:11434: llama3.2:3b",
                {"node": "127.0.0.2:11434", "requests": 3, "app_ids": ["a"]},
            ),
            NewEvent(streams.LOGS, "note", "plain"),
        ],
        now=timezone.now(),
    )
    every = described(client, "/api/events")
    assert every["events"][0]["app_ids"] == ["a"]  # its type's own fields
    assert every["total"] == 2
    processing = described(client, "/api/events?stream=ollama_activity&limit=1")
    assert processing["first_id"] == processing["last_id"] == every["first_id"]
    empty = described(client, "/api/events?type=nothing")
    assert (empty["first_id"], empty["last_id"], empty["total"]) == (None, None, 0)


def test_traces_answer_as_described_as_a_list_and_a_tree(client):
    accepted = post(
        client,
        "/api/traces",
        [
            span(ROOT, None, 0.0, 0.120, kind="server", attributes={"retries": 2}),
            span(SIBLING, ROOT, 0.002, 0.008, service="ollama"),
            span(CHILD, ROOT, 0.010, 0.050, kind="client"),
            span(
                GRANDCHILD,
                CHILD,
                0.030,
                0.040,
                status="error",
                status_message="upstream timed out",
                events=[{"name": "exception", "time": 1_764_150_000.035}],
            ),
            span(LOST, "ffffffffffffffff", 0.005, 0.006),
        ],
    )
    assert accepted == {"status": "ok", "accepted": 5}
    headless = "c" * 32  # its root has not arrived
    post(client, "/api/traces", [span(CHILD, ROOT, 1.0, 2.0, trace_id=headless)])

    listed = described(client, "/api/traces")
    assert [t["root_span_id"] for t in listed["traces"]] == [None, ROOT]
    described(client, "/api/traces?service=ollama&min_duration_ms=100&limit=1")
    tree = described(client, f"/api/traces/{span(ROOT, None, 0, 0)['trace_id']}")
    [root, lost] = tree["spans"]
    assert root["children"][1]["children"][0]["status"] == "error"
    assert lost["orphan"] is True and tree["error"] is True
    assert described(client, f"/api/traces/{headless}")["spans"][0]["orphan"]


def test_history_answers_as_described_for_nodes_backends_and_whole_series(client):
    node = post(client, "/api/network/nodes", {"url": "http://127.0.0.4:11434"})
    backend = post(client, "/api/network/backends", {"address": "127.0.0.5:50052"})
    node_id, backend_id = node["node"]["id"], backend["backend"]["id"]
    now = timezone.now()
    for seconds in range(0, 2 * 3600, 30):
        at = now - dt.timedelta(seconds=seconds)
        reachable = seconds % 300 != 0
        history.record(
            "node",
            [
                Point(
                    subject=node_id,
                    up=reachable,
                    value=12.5 if reachable else None,
                    gauge=2**31,
                    count=1,
                )
            ],
            at=at,
        )
        history.record(
            "backend",
            [Point(subject=backend_id, up=True, value=1.0, gauge=10, count=1)],
            at=at,
        )
        history.record(
            "fleet",
            [Point(up=True, value=12.5, gauge=2**31, count=1, total=1)],
            at=at,
        )
    history.roll_up(now=now)
    history.roll_up(now=now)

    raw = described(client, f"/api/network/nodes/{node_id}/history?window=1h")
    assert raw["resolution"] == "raw" and raw["availability"] < 1
    assert any(point["latency_ms"] is None for point in raw["points"])
    minutes = described(client, f"/api/network/nodes/{node_id}/history?window=24h")
    assert minutes["resolution"] == "minute"
    described(client, f"/api/network/backends/{backend_id}/history?window=7d")
    year = described(client, "/api/network/history?window=365d")
    assert year["resolution"] == "hour" and year["bucket"] > 3600
    fleet = described(client, "/api/history/fleet?window=24h")
    assert fleet["points"][0]["nodes_total"] == 1
    apps = described(client, "/api/history/apps")  # never sampled here
    assert apps["availability"] is None and apps["points"] == []
    sparks = described(client, "/api/network/nodes/history?window=5m")
    assert sparks["fields"] == ["t", "usable", "latency_ms"]
    assert len(sparks["subjects"][str(node_id)][0]) == 3


def test_traces_page_through_every_trace_once_newest_first(client):
    for number in range(7):
        service = "gateway" if number % 2 else "batch"
        trace_id = f"{number + 1:032x}"
        post(
            client,
            "/api/traces",
            [
                span(
                    ROOT, None, number, number + 0.5, trace_id=trace_id, service=service
                )
            ],
        )
    seen = []
    for offset in range(0, 9, 3):
        page = described(client, f"/api/traces?limit=3&offset={offset}")
        assert (page["total"], page["limit"], page["offset"]) == (7, 3, offset)
        seen += [trace["trace_id"] for trace in page["traces"]]
    assert seen == [f"{number + 1:032x}" for number in reversed(range(7))]
    gateway = described(client, "/api/traces?service=gateway&limit=2&offset=2")
    assert gateway["total"] == 3 and len(gateway["traces"]) == 1
    default = described(client, "/api/traces")
    assert (default["limit"], default["offset"], len(default["traces"])) == (50, 0, 7)
    for query, name in (
        ("limit=-1", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("offset=-3", "offset"),
        ("offset=1.5", "offset"),
    ):
        answer = client.get(f"/api/traces?{query}")
        assert answer.status_code == 400, query
        assert name in answer.json()["error"]

"""Request history as per-minute and per-hour rollups (activity/rollups.py)."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import defaultdict

import pytest
from django.db import connection, connections

from activity import metrics
from activity.models import (
    BUCKET_FIELDS,
    LATENCY_BOUNDS_MS,
    GatewayTotals,
    HourRollup,
    LatencyHistogram,
    MinuteRollup,
    RequestRecord,
    RequestTotals,
)

pytestmark = pytest.mark.django_db

# Twenty past noon: the history below crosses two hours' edges.
NOW = dt.datetime(2026, 3, 2, 12, 20, 30, tzinfo=dt.UTC)
GATEWAY = RequestRecord.Source.GATEWAY
REPORTED = RequestRecord.Source.REPORTED


def gateway_request(finished: dt.datetime, **fields) -> metrics.RequestReport:
    """A request as the gateway measured it (network/gateway/records.py)."""
    base = {
        "node": "127.0.0.2:11434",
        "model": "llama3.2:3b",
        "latency_ms": 120.0,
        "ok": True,
        "app_id": "",
        "timestamp": finished,
        "source": GATEWAY,
        "endpoint": "chat",
        "status_code": 200,
        "queue_ms": 0.0,
    }
    return metrics.RequestReport(**{**base, **fields})


def reported_request(finished: dt.datetime, **fields) -> metrics.RequestReport:
    """A request as an application reported it (POST /api/activity)."""
    body = {
        "node": "127.0.0.3:11434",
        "model": "qwen",
        "latency_ms": 80.0,
        "timestamp": finished.timestamp(),
        **fields,
    }
    return metrics.parse_activity(body)[0]


def history(count: int, *, seed: int = 12, hours: float = 3.0) -> list:
    """count requests of both sources over the last `hours` before NOW, oldest first:
    latencies from 1 ms to beyond the last bound (some exactly on one), failures,
    HTTP statuses, tokens or none."""
    chooser = random.Random(seed)
    requests = []
    for _ in range(count):
        finished = NOW - dt.timedelta(seconds=chooser.uniform(0, hours * 3600))
        latency = chooser.choice(
            [
                chooser.uniform(1, 60),
                chooser.uniform(60, 3000),
                chooser.uniform(3000, 200_000),
                float(chooser.choice(LATENCY_BOUNDS_MS)),
            ]
        )
        both = {
            "model": chooser.choice(["llama3.2:3b", "qwen"]),
            "latency_ms": latency,
            "prompt_tokens": chooser.choice([None, chooser.randrange(1, 900)]),
            "completion_tokens": chooser.choice([None, chooser.randrange(0, 500)]),
        }
        if chooser.random() < 0.5:
            status = chooser.choice([200, 200, 200, 404, 500, 503])
            request = gateway_request(
                finished,
                node=chooser.choice(["127.0.0.2:11434", "127.0.0.4:11434"]),
                app_id=chooser.choice(["", "router-a"]),
                endpoint=chooser.choice(["chat", "v1/chat/completions"]),
                status_code=status,
                # A stream that broke after its 200 is a failure with a 200.
                ok=status < 400 and chooser.random() > 0.1,
                queue_ms=chooser.uniform(0, 50),
                ttft_ms=chooser.choice([None, chooser.uniform(5, 900)]),
                **both,
            )
        else:
            request = reported_request(
                finished,
                node=chooser.choice(["127.0.0.3:11434", "127.0.0.2:11434"]),
                app_id=chooser.choice(["router-a", "batch-b"]),
                ok=chooser.random() > 0.2,
                **both,
            )
        requests.append(request)
    return sorted(requests, key=lambda report: report.timestamp)


def record_in_batches(requests: list, size: int = 37) -> None:
    """Record as routers and the gateway do: in batches, each at its own time, so
    that one minute's requests arrive in several batches."""
    for offset in range(0, len(requests), size):
        batch = requests[offset : offset + size]
        metrics.record_requests(batch, now=batch[-1].timestamp)


def expected_rollups(period: dt.timedelta) -> dict[tuple, dict]:
    """What the stored raw requests sum to per period and key, computed here."""
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    for row in RequestRecord.objects.all():
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        start = epoch + (row.timestamp - epoch) // period * period
        if row.status_code:
            status = f"{row.status_code // 100}xx"
        else:
            status = "ok" if row.ok else "error"
        key = (start, row.node, row.model, row.app_id, row.endpoint, status, row.source)
        sums = groups[key]
        sums["requests"] += 1
        sums["errors"] += not row.ok
        sums["latency_ms_sum"] += row.latency_ms
        sums["latency_ms_min"] = min(sums.get("latency_ms_min", 1e18), row.latency_ms)
        sums["latency_ms_max"] = max(sums.get("latency_ms_max", 0), row.latency_ms)
        bounds = (0, *LATENCY_BOUNDS_MS, float("inf"))
        for index, name in enumerate(BUCKET_FIELDS):
            sums[name] += bounds[index] < row.latency_ms <= bounds[index + 1]
        sums["prompt_tokens"] += row.prompt_tokens or 0
        sums["completion_tokens"] += row.completion_tokens or 0
        sums["token_requests"] += row.completion_tokens is not None
        if row.completion_tokens is not None:
            sums["token_latency_ms_sum"] += row.latency_ms
        sums["ttft_ms_sum"] += row.ttft_ms or 0
        sums["ttft_count"] += row.ttft_ms is not None
        sums["queue_ms_sum"] += row.queue_ms or 0
        sums["queue_count"] += row.queue_ms is not None
    return groups


def stored_rollups(model) -> dict[tuple, dict]:
    stored = {}
    for row in model.objects.all():
        key = (
            row.start,
            row.node,
            row.model,
            row.app_id,
            row.endpoint,
            row.status_class,
            row.source,
        )
        stored[key] = {name: getattr(row, name) for name in expected_fields()}
    return stored


def expected_fields() -> list[str]:
    return [
        "requests", "errors", "latency_ms_sum", "latency_ms_min", "latency_ms_max",
        *BUCKET_FIELDS, "prompt_tokens", "completion_tokens", "token_requests",
        "token_latency_ms_sum", "ttft_ms_sum", "ttft_count", "queue_ms_sum",
        "queue_count",
    ]  # fmt: skip


def test_the_histogram_has_one_column_per_bound_and_one_beyond():
    columns = [
        field.name
        for field in LatencyHistogram._meta.get_fields()
        if field.name.startswith("le_")
    ]
    assert columns == list(BUCKET_FIELDS)
    assert len(BUCKET_FIELDS) == len(LATENCY_BOUNDS_MS) + 1
    assert LATENCY_BOUNDS_MS[0] == 5 and LATENCY_BOUNDS_MS[-1] == 120_000


@pytest.mark.parametrize(
    ("model", "period"),
    [(MinuteRollup, dt.timedelta(minutes=1)), (HourRollup, dt.timedelta(hours=1))],
)
def test_rollups_sum_exactly_the_requests_they_summarise(model, period):
    requests = history(600)
    record_in_batches(requests)
    assert RequestRecord.objects.count() == 600
    expected = expected_rollups(period)
    stored = stored_rollups(model)
    assert stored.keys() == expected.keys()
    for key, sums in expected.items():
        for name in expected_fields():
            assert stored[key][name] == pytest.approx(sums[name]), (key, name)
    # Both sources and every kind of status class are there.
    assert {key[6] for key in stored} == {GATEWAY, REPORTED}
    assert {key[5] for key in stored} == {"2xx", "4xx", "5xx", "ok", "error"}
    assert sum(sums["requests"] for sums in stored.values()) == 600
    if model is HourRollup:
        assert len({key[0] for key in stored}) == 4  # 09:20 to 12:20: four hours


def test_a_minute_that_comes_in_several_batches_is_added_up_not_replaced():
    minute = NOW.replace(second=0)
    for latency in (3.0, 7.0, 300_000.0):
        metrics.record_requests(
            [reported_request(minute + dt.timedelta(seconds=1), latency_ms=latency)],
            now=NOW,
        )
    row = MinuteRollup.objects.get()
    assert (row.start, row.requests, row.status_class) == (minute, 3, "ok")
    assert (row.le_5ms, row.le_10ms, row.le_inf) == (1, 1, 1)
    assert (row.latency_ms_min, row.latency_ms_max) == (3.0, 300_000.0)
    assert row.latency_ms_sum == 300_010.0
    hour = HourRollup.objects.get()
    assert hour.start == NOW.replace(minute=0, second=0)
    assert hour.requests == 3


def test_the_gateway_totals_count_gateway_requests_per_node_model_and_status():
    requests = history(500, seed=3)
    record_in_batches(requests)
    expected: dict[tuple, list] = defaultdict(lambda: [0, 0.0, 0, 0])
    for row in RequestRecord.objects.filter(source=GATEWAY):
        sums = expected[(row.node, row.model, row.status_code)]
        sums[0] += 1
        sums[1] += row.latency_ms / 1000
        sums[2] += row.prompt_tokens or 0
        sums[3] += row.completion_tokens or 0
    stored = {
        (row.node, row.model, row.status_code): row
        for row in GatewayTotals.objects.all()
    }
    assert stored.keys() == expected.keys()
    for key, (count, seconds, prompt, completion) in expected.items():
        row = stored[key]
        assert row.requests == count
        assert row.latency_seconds_sum == pytest.approx(seconds)
        assert (row.prompt_tokens, row.completion_tokens) == (prompt, completion)
        assert sum(getattr(row, name) for name in BUCKET_FIELDS) == count
    # Reported requests are not the gateway's.
    assert sum(row.requests for row in stored.values()) == (
        RequestRecord.objects.filter(source=GATEWAY).count()
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_lose_no_increment():
    """Two writers (the gateway's and the reports' writer threads, or two server
    processes) adding into the same rows at once, on PostgreSQL's row locks."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: nothing runs concurrently")
    rounds, size = 30, 40
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def write(seed: int) -> None:
        chooser = random.Random(seed)
        try:
            start.wait()
            for _ in range(rounds):
                # The same few keys in every batch, in another order each time.
                batch = [
                    gateway_request(
                        NOW,
                        model=chooser.choice(["a", "b", "c"]),
                        status_code=chooser.choice([200, 500]),
                        latency_ms=chooser.choice([1.0, 70.0, 4000.0]),
                        completion_tokens=1,
                    )
                    for _ in range(size)
                ]
                metrics.record_requests(batch, now=NOW)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    written = 2 * rounds * size
    assert RequestRecord.objects.count() == written
    for model in (MinuteRollup, HourRollup):
        assert sum(model.objects.values_list("requests", flat=True)) == written
        assert sum(model.objects.values_list("completion_tokens", flat=True)) == written
        assert (
            sum(
                sum(getattr(row, name) for name in BUCKET_FIELDS)
                for row in model.objects.all()
            )
            == written
        )
    assert sum(GatewayTotals.objects.values_list("requests", flat=True)) == written
    assert sum(RequestTotals.objects.values_list("requests", flat=True)) == written

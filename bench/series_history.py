"""Benchmark kept history: a year of 1,000 nodes on PostgreSQL, and reading it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sollol_bench_history \\
        .venv/bin/python bench/series_history.py    # the database is made anew

Fills activity_seriespoint as the default retention keeps it after a year for
1,000 nodes probed every 5 s: 2 days of measurements, 14 days of minutes, 365
days of hours (SQL generate_series, indexes built after), and the fleet's series
beside them. Then measures (issue 14): the storage (MB on PostgreSQL), and the
answer time of the 30-day charts through the API: one node's, the fleet's, every
node's availability, and every node's latency at once (/api/network/nodes/
history); and one rollup of a minute of 1,000 nodes. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402
from alerting import setup_django  # noqa: E402

NODES = 1000
PROBE = 5  # seconds between probes
# (table, step, seconds kept, seconds between points)
TIERS = (
    ("activity_seriesmeasurement", 0, 2 * 86400, PROBE),
    ("activity_seriesminute", 60, 14 * 86400, 60),
    ("activity_serieshour", 3600, 365 * 86400, 3600),
)


def timed(call, times: int) -> dict[str, float]:
    took = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return {"p50": statistics.median(took), "max": took[-1]}


def fill(now: dt.datetime) -> dict[str, float]:
    """Write the year; return seconds it took and rows a step."""
    from django.db import connection

    from network.models import OllamaNode

    OllamaNode.objects.bulk_create(
        [
            OllamaNode(
                # Rows only: never contacted.
                url=f"http://127.2.{i // 250}.{1 + i % 250}:11434",
                host=f"127.2.{i // 250}.{1 + i % 250}",
                port=11434,
                source="config",
                status="healthy",
                created_at=now,
            )
            for i in range(NODES)
        ]
    )
    first = OllamaNode.objects.order_by("id").values_list("id", flat=True).first()
    rows = {}
    started = time.perf_counter()
    # As a running dashboard leaves them: measurements up to now, minutes up to
    # a minute and a half ago (the grace), hours up to the last whole hour.
    stamp = int(now.timestamp())
    ends = {0: stamp // PROBE * PROBE + PROBE, 60: (stamp - 90) // 60 * 60}
    ends[3600] = stamp // 3600 * 3600
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        for table, step, keep, every in TIERS:
            # Load first, index after: as a year of probes would leave it.
            cursor.execute(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'p'",
                [table],
            )
            (primary,) = cursor.fetchone()
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s "
                "AND indexname LIKE 'series_%%'",
                [table],
            )
            (by_age,) = cursor.fetchone()
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{primary}"')
            cursor.execute(f'DROP INDEX "{by_age}"')
            # Every 97th node is down a tenth of the time; latencies vary.
            down = f"s.id %% 97 = 0 AND (t / {every}) %% 10 = 0"
            if step == 0:
                columns = "series, subject, at, up, value, gauge, count, total"
                nodes = (
                    f"1, s.id, to_timestamp(t), NOT ({down}), 2.0 + (s.id %% 13), "
                    "8000000000, 2, NULL"
                )
                fleet = "3, 0, to_timestamp(t), true, 4.0, 8000000000000, 990, 1000"
            else:
                n = step // PROBE
                columns = (
                    "series, subject, at, n, up, value_sum, value_n, value_max, "
                    "gauge, count, total"
                )
                nodes = (
                    f"1, s.id, to_timestamp(t), {n}, CASE WHEN {down} THEN 0 "
                    f"ELSE {n} END, {n} * (2.0 + (s.id %% 13)), {n}, "
                    "9.0 + (s.id %% 13), 8000000000, 2, NULL"
                )
                fleet = (
                    f"3, 0, to_timestamp(t), {n}, {n}, {n} * 4.0, {n}, 9.0, "
                    "8000000000000, 990, 1000"
                )
            end = ends[step]
            times = f"generate_series({end - keep}, {end - every}, {every}) AS t"
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {nodes} "
                f"FROM generate_series(%s, %s) AS s(id), {times}",
                [first, first + NODES - 1],
            )
            rows[str(step)] = cursor.rowcount
            # The fleet's own series: one point a step (every 5 s measured).
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {fleet} FROM {times}"
            )
            cursor.execute(
                f'ALTER TABLE {table} ADD CONSTRAINT "{primary}" '
                "PRIMARY KEY (series, subject, at)"
            )
            cursor.execute(f'CREATE INDEX "{by_age}" ON {table} (at)')
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute(
            "INSERT INTO activity_seriesmark (step, until) VALUES "
            "(60, to_timestamp(%s)), (3600, to_timestamp(%s))",
            [ends[60], ends[3600]],
        )
    return {"seconds": time.perf_counter() - started, **rows}


def storage() -> dict[str, dict[str, int]]:
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for table, step, _, _ in TIERS:
            cursor.execute(
                f"SELECT pg_table_size('{table}'), pg_indexes_size('{table}'), "
                f"pg_total_relation_size('{table}'), (SELECT count(*) FROM {table})"
            )
            table_bytes, indexes, total, count = cursor.fetchone()
            sizes[str(step)] = {
                "table": table_bytes, "indexes": indexes, "total": total, "rows": count,
            }  # fmt: skip
    sizes["all"] = {
        key: sum(tier[key] for tier in sizes.values()) for key in sizes["0"]
    }
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("SOLLOL_ALLOWED_HOSTS", "testserver")
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from activity import history
    from network.models import OllamaNode

    assert connection.vendor == "postgresql", "storage is measured on PostgreSQL"
    now = timezone.now()
    started = dt.datetime.now(dt.UTC)
    filled = fill(now)
    size = storage()
    client = Client()
    node = OllamaNode.objects.order_by("id").values_list("id", flat=True)[500]

    def get(path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:300])

    reads = {
        "one node, 30 d": f"/api/network/nodes/{node}/history?window=30d",
        "one node, 24 h": f"/api/network/nodes/{node}/history?window=24h",
        "the fleet, 30 d": "/api/network/history?window=30d",
        "availability of 1,000 nodes, 30 d": "/api/network/availability?window=30d",
        "availability of 1,000 nodes, 24 h": "/api/network/availability?window=24h",
        "every node's latency, 24 h": "/api/network/nodes/history?window=24h",
        "every node's latency, 5 min": "/api/network/nodes/history?window=5m",
    }
    measured = {
        name: timed(lambda p=path: get(p), args.times) for name, path in reads.items()
    }
    sizes = {name: len(client.get(path).content) for name, path in reads.items()}

    # The next rollup: the minutes since the mark, of 1,000 nodes' measurements.
    rolled = time.perf_counter()
    made = history.roll_up(now=timezone.now() + dt.timedelta(seconds=60))
    rollup = {"ms": (time.perf_counter() - rolled) * 1000, "minutes": made.get(60, 0)}
    mb = size["all"]["total"] / 1e6
    per_row = {
        step: size[step]["total"] / size[step]["rows"] for step in ("0", "60", "3600")
    }
    lines = "".join(
        f"| {name} | {m['p50']:.0f} ms | {m['max']:.0f} ms "
        f"| {sizes[name] / 1000:.0f} KB |\n"
        for name, m in measured.items()
    )
    report = (
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit "
        f"{run.shell('git', 'rev-parse', '--short', 'HEAD')}, kept history "
        f"(bench/series_history.py, PostgreSQL)\n\n"
        f"A year of {NODES:,} nodes probed every {PROBE} s, at the default retention: "
        f"{filled['0']:,} measurements (2 d), {filled['60']:,} minutes (14 d), "
        f"{filled['3600']:,} hours (365 d), and the fleet's series; written in "
        f"{filled['seconds']:.0f} s. Machine: {os.cpu_count()} CPUs.\n\n"
        f"Storage: **{mb:,.0f} MB** in all ({size['all']['table'] / 1e6:,.0f} MB rows, "
        f"{size['all']['indexes'] / 1e6:,.0f} MB indexes): measurements "
        f"{size['0']['total'] / 1e6:,.0f} MB ({per_row['0']:.0f} bytes each), "
        f"minutes {size['60']['total'] / 1e6:,.0f} MB ({per_row['60']:.0f} B), "
        f"hours {size['3600']['total'] / 1e6:,.0f} MB ({per_row['3600']:.0f} B).\n\n"
        "| read through the API (goal: 30-day chart ≤ 200 ms) | p50 | max | answer |\n"
        "|---|---|---|---|\n"
        f"{lines}\n"
        f"One rollup run, {rollup['minutes']:,} minute points made from "
        f"{NODES:,} nodes' measurements: {rollup['ms']:.0f} ms.\n"
    )
    print(report)
    if not args.no_write:
        with run.RESULTS.open("a") as out:
            out.write(report)


if __name__ == "__main__":
    main()

"""What judging nodes by routers' reports costs the probe writer; append to RESULTS.md.

    .venv/bin/python bench/reported.py [--requests 60000] [--rounds 5]

record_node_probes (the writer's work for each batch of probe results) now also
counts, per node, the requests routers reported over SOLLOL_REPORTED_WINDOW. In a
fresh SQLite data dir under bench/out: 1,000 nodes, and N reported requests spread
over the last minute across all of them (60,000 is 1,000 requests a second). Then
the same batches of 100 probe results are recorded once (warm-up: first sight),
then with the window on (60 s) and off (0), alternating, and each batch is timed.
Run by hand; nothing leaves the process (no network at all).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/ after the project: bench/network.py must not hide the network app.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))

import run  # noqa: E402

NODES = 1000
BATCH = 100


def setup(data_dir: Path) -> None:
    os.environ["SOLLOL_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "sollol_site.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(requests: int) -> list[int]:
    from django.utils import timezone

    from activity.models import RequestRecord
    from network.choices import Source
    from network.models import OllamaNode
    from network.services import lifecycle

    now = timezone.now()
    urls = [f"http://127.1.{i // 250}.{i % 250 + 1}:11434" for i in range(NODES)]
    lifecycle.ensure_nodes(urls, source=Source.CONFIG, now=now)
    nodes = list(OllamaNode.objects.order_by("id"))
    rng = random.Random(7)
    RequestRecord.objects.bulk_create(
        [
            RequestRecord(
                timestamp=now - dt.timedelta(seconds=rng.uniform(0, 60)),
                node=rng.choice(nodes).address,
                model="llama3.2:3b",
                latency_ms=rng.uniform(50, 2000),
                ok=rng.random() > 0.1,
            )
            for _ in range(requests)
        ],
        batch_size=5000,
    )
    return [node.id for node in nodes]


def time_batches(node_ids: list[int], window: float, rounds: int) -> list[float]:
    from django.test import override_settings
    from django.utils import timezone

    from network.probes import NodeProbe
    from network.services import recording

    probe = NodeProbe(ok=True, answered=True, latency_ms=5.0, version="0.12.3")
    seconds = []
    with override_settings(SOLLOL_REPORTED_WINDOW=window):
        for _ in range(rounds):
            for start in range(0, len(node_ids), BATCH):
                batch = [(i, probe) for i in node_ids[start : start + BATCH]]
                began = time.perf_counter()
                recording.record_node_probes(batch, now=timezone.now())
                seconds.append(time.perf_counter() - began)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    info = run.machine()
    started = dt.datetime.now(dt.UTC)
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as data_dir:
        setup(Path(data_dir))
        node_ids = seed(args.requests)
        # Warm-up: a node's first probe records its first status (events, history),
        # which would be charged to whichever setting came first.
        time_batches(node_ids, 0.0, 1)
        times: dict[float, list[float]] = {60.0: [], 0.0: []}
        for _ in range(args.rounds):  # alternate: the machine's noise hits both
            for window in times:
                times[window] += time_batches(node_ids, window, 1)
    on, off = (statistics.median(times[w]) * 1000 for w in (60.0, 0.0))
    on_p95 = sorted(times[60.0])[int(0.95 * len(times[60.0]))] * 1000
    off_p95 = sorted(times[0.0])[int(0.95 * len(times[0.0]))] * 1000
    report = (
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit {info['commit']} "
        f"(+{info['uncommitted']} uncommitted files), judging nodes by reports\n\n"
        f"Written by `.venv/bin/python bench/reported.py --requests {args.requests} "
        f"--rounds {args.rounds}`. Machine: {info['nproc']} CPUs, Python "
        f"{info['python']}, load {info['load']} at start. SQLite, {NODES} nodes, "
        f"{args.requests:,} reported requests over the last minute; "
        f"record_node_probes on batches of {BATCH} healthy probes, "
        f"{len(times[60.0])} batches per setting, alternating.\n\n"
        "| SOLLOL_REPORTED_WINDOW | median ms per batch | p95 ms | ratio to off |\n"
        "|---|---|---|---|\n"
        f"| 60 s (on) | {on:.1f} | {on_p95:.1f} | {on / off:.2f} |\n"
        f"| 0 (off) | {off:.1f} | {off_p95:.1f} | 1.00 |\n"
    )
    print(report)
    if not args.no_write:
        run.write_results(report, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

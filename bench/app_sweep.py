"""Benchmark the application sweep as production runs it: Celery beat and a worker.

    .venv/bin/python bench/app_sweep.py [--seconds 120] [--apps 5]

On the machine's PostgreSQL (a database of its own, dropped after) and Redis (a
queue of its own): beat and one worker (`celery -A sollol_site`, stopped by PID)
run the periodic jobs for `--seconds`; `--apps` applications register at random
moments and never heartbeat, so each goes stale at its own deadline. Reported:
sweep runs (tasks the worker ran) per day at that rate, and how long after its
deadline each app was marked stale (the event's time minus stale_after). Issue 16:
the sweep was a beat entry every second (86,400 tasks a day). Appends to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--stale-after", type=float, default=30.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import psycopg

    name = f"sollol_bench_sweep_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SOLLOL_CELERY_QUEUE": f"sweep-{uuid.uuid4().hex[:8]}",
        "SOLLOL_CHANNEL_PREFIX": f"sweep{uuid.uuid4().hex[:8]}",
        "SOLLOL_DATA_DIR": str(work),
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        "SOLLOL_APP_STALE_AFTER": str(args.stale_after),
        "SOLLOL_APP_REMOVE_AFTER": str(args.stale_after * 100),
        "DJANGO_SETTINGS_MODULE": "sollol_site.settings",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=run.REPO,
        env=env,
        check=True,
    )
    processes = []
    try:
        for role, extra in (
            ("worker", ["--concurrency", "2", "--without-gossip", "--without-mingle"]),
            ("beat", ["--schedule", str(work / "beat-schedule")]),
        ):
            log = (work / f"{role}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "sollol_site", role]
                    + [*extra, "-l", "info"],
                    cwd=run.REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        sys.path.insert(0, str(run.REPO))
        import django

        django.setup()
        from django.utils import timezone

        from activity.models import Event
        from applications import services
        from applications.api.serializers import AppReport

        time.sleep(10)  # the worker up, the first sweep run
        started = time.monotonic()
        span = args.seconds - args.stale_after - 5
        moments = sorted(random.uniform(0, max(1.0, span)) for _ in range(args.apps))
        for index, moment in enumerate(moments):
            time.sleep(max(0.0, started + moment - time.monotonic()))
            services.register_application(
                AppReport(app_id=f"sweep-{index}", name=f"Sweep {index}"),
                now=timezone.now(),
            )
        time.sleep(max(0.0, started + args.seconds - time.monotonic()))
        elapsed = time.monotonic() - started
        stale = {
            e.payload["app_id"]: e.timestamp
            for e in Event.objects.filter(type="app_stale")
        }
        late = []
        for index in range(args.apps):
            app_id = f"sweep-{index}"
            registered = Event.objects.get(
                type="app_registered", payload__app_id=app_id
            ).timestamp
            deadline = registered + dt.timedelta(seconds=args.stale_after)
            if app_id in stale:
                late.append((stale[app_id] - deadline).total_seconds())
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
            process.wait(20)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    log = (work / "worker.log").read_text()
    runs = len(
        re.findall(r"applications\.tasks\.sweep_applications\[[^\]]+\] succeeded", log)
    )
    per_day = runs / elapsed * 86400
    report = (
        f"\n## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: commit "
        f"{run.shell('git', 'rev-parse', '--short', 'HEAD')}, the application sweep "
        "under Celery beat (bench/app_sweep.py)\n\n"
        f"`--seconds {args.seconds:g} --apps {args.apps} --stale-after "
        f"{args.stale_after:g}`, PostgreSQL and Redis, beat and one worker.\n\n"
        "| figure | measured |\n|---|---|\n"
        f"| sweep runs | {runs} in {elapsed:.0f} s = {per_day:,.0f} a day |\n"
        f"| apps marked stale | {len(late)} of {args.apps} |\n"
        f"| marked after the deadline | "
        + (
            f"median {statistics.median(late) * 1000:.0f} ms, max "
            f"{max(late) * 1000:.0f} ms, min {min(late) * 1000:.0f} ms |\n"
            if late
            else "— |\n"
        )
    )
    print(report)
    if not args.no_write:
        with run.RESULTS.open("a") as out:
            out.write(report)


if __name__ == "__main__":
    main()

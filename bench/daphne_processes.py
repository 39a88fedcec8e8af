"""How many daphne processes a heartbeat rate needs: N of them behind nginx.

    .venv/bin/python bench/daphne_processes.py [--processes 1 2 3] [--rounds 2]

Production as deploy/ lays it out: N `daphne sollol_site.asgi:application`
processes on ports of 127.0.0.1, Debian's nginx in front (round robin, keep-alive
to each), PostgreSQL (a database of its own, dropped at the end) and Redis (the
channel layer and the shared rate limits, under a prefix of its own). No Celery
worker runs: what is measured is the web processes' own capacity. For each N, in
turns round by round: 200 apps registered, heartbeats at saturation with wrk (20
connections, through nginx), then paced at 1,000/s (bench/paced.py). Prints a
table to paste into RESULTS.md: heartbeats/s, p99, and the cores used by the
daphne processes and by the whole machine (nginx, PostgreSQL and the load
generators included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

import psycopg
import run
from gateway import Nginx
from run import HOST, PYTHON, REPO, log

POSTGRES = "postgres://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
CONNECTIONS = 20


class Fleet:
    """N daphne processes and nginx in front, on one fresh PostgreSQL database."""

    def __init__(self, workspace: run.Workspace, processes: int, number: int) -> None:
        self.database = f"sollol_bench_{os.getpid()}_{number}"
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        self.env = {
            "DATABASE_URL": f"{POSTGRES}/{self.database}",
            "REDIS_URL": REDIS,
            "SOLLOL_CHANNEL_PREFIX": self.database,
        }
        self.servers = [workspace.server("daphne", self.env) for _ in range(processes)]
        self.nginx: Nginx | None = None
        try:
            subprocess.run(
                [str(PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"],
                cwd=REPO,
                env={**run.server_env(workspace.root), **self.env},
                check=True,
            )
            for server in self.servers:
                server.data_dir.mkdir(parents=True, exist_ok=True)
                server.start()
            root = workspace.root / f"nginx-{number}"
            root.mkdir()
            self.nginx = Nginx(
                root,
                [f"{HOST}:{server.port}" for server in self.servers],
                listen_host=HOST,
                host=f"{HOST}:{self.servers[0].port}",
            )
        except BaseException:
            self.stop()
            raise
        self.port = self.nginx.port

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for server in self.servers:
            server.stop()
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def measured(fleet: Fleet, body) -> dict:
    """Run body(); return its result with the cores the daphnes and machine used."""
    wall, machine, daphnes = (
        time.perf_counter(),
        run.machine_busy_seconds(),
        fleet.cpu_seconds(),
    )
    result = body()
    wall = time.perf_counter() - wall
    result["daphne_cores"] = (fleet.cpu_seconds() - daphnes) / wall
    result["machine_cores"] = (run.machine_busy_seconds() - machine) / wall
    return result


def one_round(workspace: run.Workspace, processes: int, number: int, seconds: float):
    fleet = Fleet(workspace, processes, number)
    try:
        run.register_heartbeat_apps(fleet)
        run.wrk(fleet, 3)  # warm-up
        saturation = measured(fleet, lambda: run.wrk(fleet, seconds))
        saturation["rps"] = saturation["requests"] / (saturation["duration_us"] / 1e6)
        argv = (
            f"bench/paced.py --port {fleet.port} --rate {run.PACED_RATE:g} "
            f"--duration {seconds:g} --warmup 3 --connections {CONNECTIONS} "
            f"--apps {run.HEARTBEAT_APPS}"
        )
        paced = measured(
            fleet,
            lambda: json.loads(
                subprocess.run(
                    [str(PYTHON), *argv.split()],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            ),
        )
    finally:
        fleet.stop()
    return {"processes": processes, "saturation": saturation, "paced": paced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    log(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    workspace = run.Workspace(keep=False)
    rows: list[dict] = []
    try:
        number = 0
        for round_number in range(args.rounds):
            for processes in args.processes:
                number += 1
                row = one_round(workspace, processes, number, args.seconds)
                row["round"] = round_number + 1
                s, p = row["saturation"], row["paced"]
                log(
                    f"{processes} daphne: {s['rps']:.0f} heartbeats/s "
                    f"(p99 {s['p99_us'] / 1e3:.1f} ms, daphnes "
                    f"{s['daphne_cores']:.2f} cores, machine "
                    f"{s['machine_cores']:.2f}); paced {run.PACED_RATE:g}/s p99 "
                    f"{p['latency']['p99_ms']:.2f} ms, errors "
                    f"{p['non2xx'] + p['socket_errors'] + p['timeouts']}"
                )
                rows.append(row)
    finally:
        workspace.close()
    print(render(rows, args.processes))


def render(rows: list[dict], processes: list[int]) -> str:
    out = [
        "| daphne processes | heartbeats/s at saturation (median, range) | "
        "p99 ms | daphne cores | machine cores | paced 1,000/s p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for count in processes:
        mine = [row for row in rows if row["processes"] == count]
        saturated = [row["saturation"] for row in mine]
        rates = [s["rps"] for s in saturated]

        def median(values) -> float:
            return statistics.median(list(values))

        out.append(
            f"| {count} | {median(rates):,.0f} "
            f"({min(rates):,.0f}–{max(rates):,.0f}) | "
            f"{median(s['p99_us'] / 1e3 for s in saturated):.1f} | "
            f"{median(s['daphne_cores'] for s in saturated):.2f} | "
            f"{median(s['machine_cores'] for s in saturated):.2f} | "
            f"{median(r['paced']['latency']['p99_ms'] for r in mine):.2f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()

"""Benchmark: how the dashboard lives through its faults (issue 7), in seconds.

    .venv/bin/python bench/faults.py                   # every scenario, 3 rounds
    .venv/bin/python bench/faults.py --rounds 1 --only database redis

Each round starts fresh `manage.py serve` processes (by PID) and measures, from
outside, what an operator would see:

- database: PostgreSQL (a database of its own) reached through a TCP proxy that
  is cut for 5 s. Time until requests answer 503, how long a 503 takes, and the
  time from the database's return to the first 200, with no restart.
- redis: a private redis-server stopped for 5 s (the machine's stays up). Time
  until a WebSocket client is told (closed), writes meanwhile, the time from
  Redis's return until a reconnecting client is streaming again, and how many
  of the events made meanwhile its ?since= replay delivered.
- restart: the dashboard stopped for 5 s and started again on the same data,
  with 20 applications heartbeating every 2 s and 3 probed nodes: time until
  every app was heard from again, app_stale events meanwhile, and whether the
  nodes' status history survived.
- flapping: a node failing every other probe for 40 probes (1 s apart): the
  status-change events that made.

Only 127.0.0.0/8 is contacted. Results are appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import requests
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import run  # noqa: E402

from tests.faults import PrivateRedis, TcpProxy  # noqa: E402

log = run.log
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
OUTAGE = 5.0


def serve(workspace: run.Workspace, **env: str) -> run.Server:
    server = workspace.server(
        "embedded",
        {
            "SOLLOL_DISCOVER_LOCALHOST": "false",
            "SOLLOL_WRITE_RATE": "0",
            "SOLLOL_APP_WRITE_RATE": "0",
            **env,
        },
    )
    server.prepare()
    server.start(timeout=90)
    return server


def url(server: run.Server) -> str:
    return f"http://{run.HOST}:{server.port}"


def register(server: run.Server, app_id: str) -> requests.Response:
    return requests.post(
        url(server) + "/api/applications/register",
        json={"app_id": app_id, "name": app_id},
        timeout=30,
    )


def until(predicate, timeout: float, step: float = 0.05) -> float:
    """Return the seconds until predicate() was true (raise after timeout)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("not in time")
        time.sleep(step)
    return time.monotonic() - started


# --- scenarios -------------------------------------------------------------------


def database(workspace: run.Workspace, **env: str) -> dict:
    import psycopg

    name = f"sollol_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    proxy = TcpProxy(("127.0.0.1", 5432))
    server = None
    try:
        server = serve(
            workspace,
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{proxy.port}/{name}",
            **env,
        )
        assert register(server, "before").status_code == 200
        proxy.down()
        cut = time.monotonic()
        refused = []
        while time.monotonic() - cut < OUTAGE:
            started = time.monotonic()
            status = register(server, f"during-{len(refused)}").status_code
            refused.append((status, time.monotonic() - started))
            time.sleep(0.2)
        proxy.up()
        back = until(lambda: register(server, "after").status_code == 200, 60, step=0.1)
        statuses = {status for status, _ in refused}
        return {
            "statuses_during": sorted(statuses),
            "answer_median_s": statistics.median(t for _, t in refused),
            "answer_max_s": max(t for _, t in refused),
            "recovered_s": back,
            "restarted": server.process.poll() is not None,
        }
    finally:
        if server is not None:
            server.stop()
        proxy.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis(workspace: run.Workspace) -> dict:
    private = PrivateRedis(workspace.root / f"redis-{uuid.uuid4().hex[:6]}")
    private.start()
    server = None
    try:
        server = serve(workspace, REDIS_URL=private.url)
        ws_url = f"ws://{run.HOST}:{server.port}/ws/applications"
        with connect(ws_url, open_timeout=10) as socket_:
            register(server, "a0")
            last = json.loads(socket_.recv(timeout=10))["id"]
            private.stop()
            stopped = time.monotonic()
            written = sum(
                register(server, f"a{i}").status_code == 200 for i in range(1, 21)
            )
            try:
                while True:
                    socket_.recv(timeout=30)
            except Exception:
                told = time.monotonic() - stopped
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
        private.start()
        returned = time.monotonic()
        while True:
            try:
                resumed = connect(f"{ws_url}?since={last}", open_timeout=5, legacy=True)
                break
            except Exception:
                if time.monotonic() - returned > 60:
                    raise
                time.sleep(0.1)
        with resumed:
            replayed = []
            while len(replayed) < written:
                replayed.append(json.loads(resumed.recv(timeout=10)))
            streaming = time.monotonic() - returned
        return {
            "client_told_s": told,
            "writes_during": written,
            "replayed": len({e["app_id"] for e in replayed}),
            "streaming_again_s": streaming,
        }
    finally:
        if server is not None:
            server.stop()
        private.stop()


def restart(workspace: run.Workspace) -> dict:
    from simulator.ollama import running_fleet
    from sollol import DashboardClient

    with running_fleet(3, base="127.7.0.1", port=0, seed=31) as fleet:
        server = serve(
            workspace,
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls),
            SOLLOL_PROBE_INTERVAL="1",
            SOLLOL_PROBE_TIMEOUT="1",
            SOLLOL_APP_STALE_AFTER="6",
            SOLLOL_APP_REMOVE_AFTER="12",
        )
        base = url(server)
        clients = [
            DashboardClient(
                app_name=f"bench-{i}", dashboard_url=base, heartbeat_interval=2.0
            )
            for i in range(20)
        ]
        try:
            until(lambda: all(c.registered for c in clients), 30)
            fleet.nodes[0].die()
            until(lambda: history(base, fleet.urls[0]) >= 2, 20)
            fleet.nodes[0].revive()
            until(lambda: history(base, fleet.urls[0]) >= 3, 20)
            kept = history(base, fleet.urls[0])
            server.stop()
            time.sleep(OUTAGE)
            server.start(timeout=90)
            restarted = dt.datetime.now(dt.UTC).timestamp()
            back = until(lambda: heard_all(base, restarted, len(clients)), 30, 0.1)
            time.sleep(8)  # past the stale timeout: a storm would be visible now
            stale = len(events(base, "app_stale"))
            return {
                "apps_heard_again_s": back,
                "heartbeat_interval_s": 2.0,
                "app_stale_events": stale,
                "node_history_before": kept,
                "node_history_after": history(base, fleet.urls[0]),
            }
        finally:
            for client in clients:
                client.close(timeout=1)
            server.stop()


def history(base: str, node_url: str) -> int:
    nodes = requests.get(base + "/api/network/nodes", timeout=10).json()["nodes"]
    [node] = [n for n in nodes if n["url"] == node_url]
    detail = requests.get(f"{base}/api/network/nodes/{node['id']}", timeout=10)
    return len(detail.json()["history"])


def heard_all(base: str, since: float, count: int) -> bool:
    apps = requests.get(base + "/api/applications?limit=1000", timeout=10).json()
    fresh = [a for a in apps["applications"] if a["last_heartbeat"] >= since]
    return len(fresh) == count


def events(base: str, type: str) -> list[dict]:
    with connect(f"ws{base[4:]}/ws/applications?since=0", open_timeout=10) as ws:
        found = []
        try:
            while True:
                message = json.loads(ws.recv(timeout=1))
                if message["type"] == type:
                    found.append(message)
        except TimeoutError:
            return found


def flapping(workspace: run.Workspace) -> dict:
    from simulator.ollama import running_fleet

    with running_fleet(1, base="127.7.1.1", port=0, seed=32) as fleet:
        server = serve(
            workspace,
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls),
            SOLLOL_PROBE_INTERVAL="1",
            SOLLOL_PROBE_TIMEOUT="0.5",
        )
        base = url(server)
        try:
            until(lambda: history(base, fleet.urls[0]) >= 1, 20)
            with connect(f"ws{base[4:]}/ws/network/nodes", open_timeout=10) as ws:
                node = fleet.nodes[0]
                for i in range(40):
                    if i % 2:
                        node.revive()
                    else:
                        node.die()
                    time.sleep(1.0)
                node.revive()
                changes = []
                try:
                    while True:
                        message = json.loads(ws.recv(timeout=2))
                        if message["type"] == "status_change":
                            changes.append(message["new_status"])
                except TimeoutError:
                    pass
            return {"flips": 40, "status_change_events": len(changes), "seen": changes}
        finally:
            server.stop()


SCENARIOS = {
    "database": database,
    # psycopg_pool's own reconnect backoff, with no ceiling (core/dbpool.py)
    "database-uncapped": functools.partial(database, SOLLOL_DB_RECONNECT_MAX_DELAY="0"),
    "redis": redis,
    "restart": restart,
    "flapping": flapping,
}


def render(results: dict, args, info: dict, started: dt.datetime) -> str:
    command = " ".join(["bench/faults.py", *sys.argv[1:]]).strip()
    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit {info['commit']} "
        f"(+{info['uncommitted']} uncommitted files), faults survived\n",
        f"Written by `.venv/bin/python {command}`. Machine: {info['nproc']} CPUs, "
        f"Python {info['python']}, load {info['load']} at start. Fresh "
        f"`manage.py serve` per scenario and round; outages of {OUTAGE:.0f} s.\n",
    ]
    for name, rows in results.items():
        out.append(f"### {name}\n")
        keys = [k for k in rows[0] if k != "seen"]
        out.append("| round | " + " | ".join(keys) + " |")
        out.append("|---" * (len(keys) + 1) + "|")
        for i, row in enumerate(rows, 1):
            cells = [
                f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k])
                for k in keys
            ]
            out.append(f"| {i} | " + " | ".join(cells) + " |")
        if "seen" in rows[0]:
            out.append(f"\nStatus changes of round 1: {', '.join(rows[0]['seen'])}.")
        out.append("")
    return "\n".join(out) + "\n"


def main() -> int:
    global OUTAGE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--outage", type=float, default=OUTAGE, help="seconds each service is away"
    )
    args = parser.parse_args()
    OUTAGE = args.outage
    started = dt.datetime.now(dt.UTC)
    info = run.machine()
    workspace = run.Workspace(keep=False)
    results: dict[str, list[dict]] = {}
    try:
        for name in args.only or list(SCENARIOS):
            for round_number in range(1, args.rounds + 1):
                log(f"{name}, round {round_number}")
                row = SCENARIOS[name](workspace)
                log(f"  {row}")
                results.setdefault(name, []).append(row)
    finally:
        workspace.close()
    report = render(results, args, info, started)
    print(report)
    if not args.no_write:
        run.write_results(report, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark GET /api/prometheus on a big fleet; append results to RESULTS.md.

    .venv/bin/python bench/prometheus.py            # 3 rounds of 200 requests
    .venv/bin/python bench/prometheus.py --quick    # 1 round of 50
    .venv/bin/python bench/prometheus.py --profile  # py-spy summary too

Each round starts fresh servers (free port on 127.0.0.1, fresh SQLite data dir,
stopped by PID; see bench/run.py): the dashboard, `manage.py serve` with
SOLLOL_DISCOVER_LOCALHOST=false and a probe interval of a day so nothing is probed
after the (empty) cycle at start-up, its database then seeded through the ORM
(`bench/prometheus.py seed`, a child process on its data dir: 1,000 nodes with
their models on disk and in memory, 250 RPC backends, 10,000 applications, request
totals per node and loaded model, event counts); and the ceiling, bench/bare_asgi.py
on uvicorn serving the bytes the dashboard served. After 10 warm-up requests, N
sequential GETs on one keep-alive connection are timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import run
from paced import percentile

HOST = run.HOST
NODES = 1000
BACKENDS = 250
APPLICATIONS = 10_000
STALE_SHARE = 0.05
TARGET_MEDIAN_MS = 200.0  # the figure
GIB = 1 << 30

# (name, size in bytes, family, parameter size, quantization)
CATALOG = [
    ("llama3.2:3b", int(3.4 * GIB), "llama", "3.2B", "Q4_K_M"),
    ("llama3.1:8b", int(6.1 * GIB), "llama", "8.0B", "Q4_K_M"),
    ("qwen2.5:7b", int(5.8 * GIB), "qwen2", "7.6B", "Q4_K_M"),
    ("qwen2.5-coder:14b", int(10.2 * GIB), "qwen2", "14.8B", "Q4_K_M"),
    ("mistral:7b", int(5.2 * GIB), "llama", "7.2B", "Q4_0"),
    ("gemma2:9b", int(7.9 * GIB), "gemma2", "9.2B", "Q4_0"),
    ("phi3:mini", int(3.1 * GIB), "phi3", "3.8B", "Q4_0"),
    ("deepseek-r1:8b", int(6.0 * GIB), "llama", "8.0B", "Q4_K_M"),
    ("nomic-embed-text:latest", int(0.3 * GIB), "nomic-bert", "137M", "F16"),
    ("mxbai-embed-large:latest", int(0.7 * GIB), "bert", "334M", "F16"),
]
STREAM_TYPES = {
    "nodes": ["node_discovered", "status_change", "node_removed"],
    "backends": ["backend_connected", "backend_disconnected", "status_change"],
    "ollama_activity": ["model_loaded", "model_unloaded", "model_processing"],
    "applications": [
        "app_registered",
        "app_updated",
        "app_stale",
        "app_recovered",
        "app_unregistered",
        "app_removed",
    ],
    "logs": ["log"],
}

log = run.log


# --- seeding (runs in a child process, on the fresh data dir) ------------------------


def _digest(chooser: random.Random) -> str:
    return "".join(chooser.choice("0123456789abcdef") for _ in range(64))


def seed() -> dict[str, int]:
    """Fill the database of SOLLOL_DATA_DIR (migrated) with a big, realistic fleet."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sollol_site.settings")
    sys.path.insert(0, str(run.REPO))
    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from activity.metrics import LATENCY_BUCKETS
    from activity.models import EventCount, RequestTotals
    from applications.models import Application
    from network.models import OllamaNode, RpcBackend

    chooser = random.Random(4)
    now = timezone.now()
    nodes, backends, apps, totals = [], [], [], []
    for index in range(NODES):
        host = f"127.1.{(index + 1) // 256}.{(index + 1) % 256}"
        status = chooser.choices(
            ["healthy", "degraded", "unhealthy", "offline"], [90, 4, 3, 3]
        )[0]
        on_disk = chooser.sample(CATALOG, chooser.randint(3, 8))
        disk = [
            {
                "name": name,
                "model": name,
                "size": size,
                "digest": _digest(chooser),
                "modified_at": "2026-11-20T10:15:30.123456789Z",
                "details": {
                    "family": family,
                    "parameter_size": params,
                    "quantization_level": quant,
                    "format": "gguf",
                },
            }
            for name, size, family, params, quant in on_disk
        ]
        loaded = []
        for model in chooser.sample(disk, chooser.choice([0, 1, 1, 1, 2, 2, 3])):
            size = model["size"] + chooser.randint(200, 900) * (1 << 20)
            loaded.append(
                {
                    **{k: model[k] for k in ("name", "model", "digest", "details")},
                    "size": size,
                    "size_vram": size if chooser.random() < 0.8 else size // 2,
                    "expires_at": "2026-11-27T10:20:30.123456789Z",
                    "context_length": 4096,
                }
            )
        up = status in ("healthy", "degraded")
        nodes.append(
            OllamaNode(
                url=f"http://{host}:11434",
                host=host,
                port=11434,
                source="config",
                status=status,
                version="0.12.6",
                latency_ms=chooser.uniform(0.5, 40.0) if up else None,
                latency_avg_ms=chooser.uniform(0.5, 40.0) if up else None,
                disk_models=disk,
                loaded_models=loaded,
                vram_used_bytes=sum(m["size_vram"] for m in loaded),
                last_seen=now,
                last_probe=now,
                created_at=now,
            )
        )
        for model in loaded if up else []:
            requests = chooser.randint(100, 50_000)
            shares = [chooser.random() ** 2 for _ in range(len(LATENCY_BUCKETS) + 1)]
            buckets = [int(requests * s / sum(shares)) for s in shares]
            buckets[3] += requests - sum(buckets)
            totals.append(
                RequestTotals(
                    node=f"{host}:11434",
                    model=model["name"],
                    requests=requests,
                    errors=requests // chooser.randint(50, 500),
                    latency_seconds_sum=requests * chooser.uniform(0.2, 3.0),
                    prompt_tokens=requests * chooser.randint(50, 800),
                    completion_tokens=requests * chooser.randint(20, 400),
                    buckets=buckets,
                )
            )
    for index in range(BACKENDS):
        host = f"127.3.{(index + 1) // 256}.{(index + 1) % 256}"
        status = chooser.choices(["online", "busy", "offline"], [85, 10, 5])[0]
        devices = [
            {"index": device, "free": chooser.randint(1, 23) * GIB, "total": 24 * GIB}
            for device in range(chooser.choice([1, 1, 2]))
        ]
        backends.append(
            RpcBackend(
                address=f"{host}:50052",
                host=host,
                port=50052,
                source="config",
                status=status,
                protocol="3.0.0",
                devices=devices if status != "offline" else [],
                latency_ms=chooser.uniform(0.2, 5.0) if status != "offline" else None,
                last_seen=now,
                last_probe=now,
                session_at=now,
                created_at=now,
            )
        )
    for index in range(APPLICATIONS):
        stale = chooser.random() < STALE_SHARE
        heartbeat = now - dt.timedelta(seconds=45 if stale else 3)
        # Nothing goes stale or away while the benchmark runs.
        stale_after = heartbeat + dt.timedelta(seconds=30 if stale else 86400)
        apps.append(
            Application(
                app_id=f"bench-{index:05d}",
                name=f"Bench App {index}",
                router_type="HybridRouter",
                version="1.4.2",
                metadata={"env": "bench", "host": f"worker-{index % 1000:03d}"},
                status="stale" if stale else "active",
                start_time=now - dt.timedelta(hours=1),
                last_heartbeat=heartbeat,
                stale_after=stale_after,
                remove_after=now + dt.timedelta(days=2),
            )
        )
    counts = [
        EventCount(stream=stream, type=type, count=chooser.randint(1, 10**6))
        for stream, types in STREAM_TYPES.items()
        for type in types
    ]
    with transaction.atomic():
        OllamaNode.objects.bulk_create(nodes, batch_size=200)
        RpcBackend.objects.bulk_create(backends, batch_size=200)
        Application.objects.bulk_create(apps, batch_size=500)
        RequestTotals.objects.bulk_create(totals, batch_size=500)
        EventCount.objects.bulk_create(counts)
    return {
        "nodes": len(nodes),
        "up": sum(n.status in ("healthy", "degraded") for n in nodes),
        "loaded_models": sum(len(n.loaded_models) for n in nodes),
        "backends": len(backends),
        "applications": len(apps),
        "stale": sum(a.status == "stale" for a in apps),
        "request_totals": len(totals),
        "event_counts": len(counts),
    }


# --- measuring -----------------------------------------------------------------------


def dashboard_env() -> dict[str, str]:
    return {
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        "SOLLOL_OLLAMA_NODES": "",
        "SOLLOL_RPC_BACKENDS": "",
        # Nothing is probed while we measure (the seeded hosts do not exist).
        "SOLLOL_PROBE_INTERVAL": "86400",
        "SOLLOL_APP_SWEEP_INTERVAL": "86400",
    }


def seeded_dashboard(workspace: run.Workspace) -> tuple[run.Server, dict]:
    """Start a fresh dashboard; once its start-up probe cycle ran, seed its database.

    The scheduler runs every task once at start-up: seeded before, the nodes would
    be probed at addresses where nothing answers and all be marked down.
    """
    server = workspace.server("embedded", dashboard_env())
    server.prepare()
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not get_json(server.port, "/api/network/health").get("probe_cycle"):
            if time.monotonic() > deadline:
                raise RuntimeError("no probe cycle within 30 s")
            time.sleep(0.1)
        completed = subprocess.run(
            [str(run.PYTHON), "bench/prometheus.py", "seed"],
            cwd=run.REPO,
            env={**run.server_env(server.data_dir), **server.env},
            check=True,
            capture_output=True,
            text=True,
        )
    except Exception:
        server.stop()
        raise
    return server, json.loads(completed.stdout.strip().splitlines()[-1])


def get_json(port: int, path: str) -> Any:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return json.loads(response.read())
    finally:
        connection.close()


def scrape(port: int, requests: int) -> dict:
    """10 + requests sequential GET /api/prometheus on one keep-alive connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    times, sizes, body, content_type = [], [], b"", ""
    for index in range(10 + requests):
        started = time.perf_counter()
        connection.request("GET", "/api/prometheus")
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET /api/prometheus: {response.status} {body[:300]!r}")
        content_type = response.getheader("content-type", "")
        if index < 10:
            continue
        times.append(elapsed)
        sizes.append(len(body))
    connection.close()
    ordered = sorted(times)
    return {
        "requests": requests,
        "median_ms": statistics.median(ordered) * 1e3,
        "p95_ms": percentile(ordered, 0.95) * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "bytes": round(statistics.mean(sizes)),
        "content_type": content_type,
        "body": body,
    }


def check_body(body: bytes, seeded: dict) -> dict[str, Any]:
    """Parse the dashboard's answer as Prometheus would; check it shows the fleet."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    up = [s.value for s in families["sollol_node_up"].samples]
    apps = {
        s.labels["status"]: s.value for s in families["sollol_applications"].samples
    }
    found = {
        "series": sum(len(f.samples) for f in families.values()),
        "nodes": len(up),
        "loaded_models": len(families["sollol_node_model_vram_bytes"].samples),
        "applications": int(sum(apps.values())),
    }
    found["up"] = int(sum(up))
    if (found["nodes"], found["up"], found["applications"]) != (
        seeded["nodes"],
        seeded["up"],
        APPLICATIONS,
    ):
        raise RuntimeError(f"the scrape shows {found}, not the seeded {seeded}")
    return found


def rounds(
    workspace: run.Workspace, count: int, requests: int, profile_s: float
) -> tuple[list[dict], dict | None]:
    rows: list[dict] = []
    profile = None
    body_file = workspace.root / "prometheus-body.txt"
    for number, kind in run.rounds_of(["dashboard", "ceiling"], count):
        if kind == "ceiling" and not body_file.exists():
            continue  # after a dashboard has answered once
        log(f"round {number}: {kind}")
        import network

        code = network.code_state()
        seeded: dict = {}
        if kind == "ceiling":
            server = workspace.server(
                run.CEILING, {"BENCH_PROMETHEUS_BODY": str(body_file)}
            )
            server.prepare()
            server.start()
        else:
            server, seeded = seeded_dashboard(workspace)
            log(f"  seeded {seeded}")
        try:
            usage = run.Usage(server)
            row = scrape(server.port, requests)
            row.update(usage.finish())
            if kind == "dashboard":
                row["found"] = check_body(row["body"], seeded)
                if profile_s and profile is None:
                    path = server.data_dir / "prometheus.pyspy"
                    spy = network.pyspy(server.process.pid, profile_s, path)
                    scrape(server.port, int(profile_s * 8))  # ≥ profile_s long
                    spy.wait(60)
                    profile = network.summarise_profile(path, PROFILE_PARTS)
        except Exception:
            log(f"{kind} failed; server log:\n{server.log_tail()}")
            raise
        finally:
            server.stop()
        if kind == "dashboard":
            body_file.write_bytes(row["body"])
        del row["body"]
        row.update(kind=kind, round=number, code=code, seeded=seeded)
        log(
            f"  median {row['median_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms, "
            f"{row['bytes']:,} bytes"
        )
        rows.append(row)
    ceilings = {r["round"]: r["median_ms"] for r in rows if r["kind"] == "ceiling"}
    fallback = statistics.median(ceilings.values()) if ceilings else float("nan")
    for row in rows:
        row["ratio"] = row["median_ms"] / ceilings.get(row["round"], fallback)
    return rows, profile


PROFILE_PARTS = [
    ("`prometheus_metrics` view (all)", "prometheus_metrics (", ""),
    ("… collector: node rows and their loaded models", "nodes (", ""),
    ("… collector: backends", "backends (", ""),
    ("… collector: applications by status", "applications (", ""),
    ("… collector: router totals", "router (", ""),
    ("… ORM: iterating rows", "ValuesListIterable.__iter__ (", ""),
    ("request plumbing: outside the view", "!prometheus_metrics (", ""),
]


# --- the run -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 50 requests")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    parser.add_argument("--no-write", action="store_true", help="print, do not append")
    parser.add_argument("--profile", action="store_true", help="py-spy 10 s once")
    args = parser.parse_args()
    config = dict(rounds=1, requests=50) if args.quick else dict(rounds=3, requests=200)
    import network

    started = dt.datetime.now(dt.UTC)
    info = run.machine()
    info["code_at_start"] = network.code_state()
    log(f"commit {info['commit']}, {info['nproc']} CPUs, load {info['load']}")
    workspace = run.Workspace(args.keep)
    try:
        rows, profile = rounds(
            workspace, config["rounds"], config["requests"], 10 if args.profile else 0
        )
    finally:
        workspace.close()
    info["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    report = render(rows, profile, info, started, args.quick)
    if not args.no_write:
        with run.RESULTS.open("a") as out:
            out.write(report)
        log(f"appended to {run.RESULTS}")
    print(report)


def render(
    rows: list[dict],
    profile: dict | None,
    info: dict,
    started: dt.datetime,
    quick: bool,
) -> str:
    import network

    dashboards = [r for r in rows if r["kind"] == "dashboard"]
    ceilings = [r for r in rows if r["kind"] == "ceiling"]
    median = run.median_of(dashboards, lambda r: r["median_ms"])
    seeded, found = dashboards[0]["seeded"], dashboards[0]["found"]
    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit {info['code_at_start']} at start, "
        f"GET /api/prometheus, {'quick smoke test' if quick else 'full run'}\n",
        "Written by `bench/prometheus.py` (`.venv/bin/python bench/prometheus.py"
        + "".join(f" {arg}" for arg in sys.argv[1:])
        + f"`). Machine: {info['nproc']} CPUs ({info['cpu']}), memory "
        f"{info['memory']}, kernel {info['kernel']}, Python {info['python']}. Load "
        f"average {info['load']} at start, {info['load_after']} at end. Dashboard: "
        "`manage.py serve --host 127.0.0.1 --port P`, fresh SQLite data dir seeded "
        "through the ORM after its (empty) start-up probe cycle "
        f"({seeded['nodes']:,} nodes holding "
        f"{seeded['loaded_models']:,} loaded models, {seeded['backends']} RPC "
        "backends, "
        f"{seeded['applications']:,} applications of which {seeded['stale']} stale, "
        f"{seeded['request_totals']:,} request-totals rows, "
        f"{seeded['event_counts']} event counts), `SOLLOL_DISCOVER_LOCALHOST=false`, "
        "probe interval 86,400 s (nothing probed). The answer parsed with "
        f"prometheus_client's parser: {found['series']:,} samples, "
        f"{found['nodes']:,} nodes ({found['up']:,} up), "
        f"{found['loaded_models']:,} per-model VRAM "
        f"series, {found['applications']:,} applications. Content type "
        f"`{dashboards[0]['content_type']}`. After 10 warm-up requests; each round "
        "starts fresh servers; the ceiling is bench/bare_asgi.py on "
        "uvicorn+uvloop+httptools serving the body the dashboard served "
        "(`BENCH_PROMETHEUS_BODY`).\n",
        "### Targets\n",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
        f"| GET /api/prometheus, {NODES:,} nodes and {APPLICATIONS:,} apps, median "
        f"(median of rounds) | ≤ {TARGET_MEDIAN_MS:g} ms | {median:.1f} ms | "
        f"{'yes' if median <= TARGET_MEDIAN_MS else 'NO'} |",
        "",
        f"### GET /api/prometheus, {rows[0]['requests']} sequential requests on one "
        "keep-alive connection\n",
        "| server | median ms | p95 ms | max ms | × ceiling (median) | bytes | "
        "server CPU ms/request |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "dashboard": "dashboard, `manage.py serve`",
        "ceiling": "bare ASGI on uvicorn+uvloop+httptools, same bytes (ceiling)",
    }
    for kind, group in (("dashboard", dashboards), ("ceiling", ceilings)):
        if not group:
            continue
        out.append(
            f"| {labels[kind]} | {run.median_of(group, lambda r: r['median_ms']):.2f}"
            f" | {run.median_of(group, lambda r: r['p95_ms']):.2f} | "
            f"{max(r['max_ms'] for r in group):.2f} | "
            f"{run.median_of(group, lambda r: r['ratio']):.0f} | "
            f"{run.median_of(group, lambda r: r['bytes']):,.0f} | "
            f"{run.median_of(group, cpu_per_request):.1f} |"
        )
    out += [
        "",
        "| round | server | median ms | p95 ms | max ms | ratio | others (cores) | "
        "code |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['round']} | {r['kind']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f}"
            f" | {r['max_ms']:.2f} | {r['ratio']:.0f} | {r['other_cores']:.2f} | "
            f"{'-' if r['kind'] == 'ceiling' else r['code']} |"
        )
    out.append("")
    if profile:
        out += network.render_profile(
            "Profile of the dashboard answering GET /api/prometheus back to back "
            "(py-spy 0.4.3, `record --threads --gil --rate 100`, 10 s)",
            profile,
        )
    return "\n".join(out) + "\n"


def cpu_per_request(row: dict) -> float:
    return row["server_cpu_s"] / (row["requests"] + 10) * 1e3


if __name__ == "__main__":
    os.chdir(run.REPO)
    if sys.argv[1:2] == ["seed"]:
        print(json.dumps(seed()))
        sys.exit(0)
    sys.exit(main())

"""Benchmark the browser dashboard in a real Chromium; append results to RESULTS.md.

    .venv/bin/python bench/page.py               # 5 loads, 20 s of 50 events/s
    .venv/bin/python bench/page.py --loads 3 --seconds 10 --no-write
    .venv/bin/python bench/page.py --loads 20 --against /tmp/base  # A/B

Targets (issue 6): first contentful paint ≤ 1 s with 100 nodes and 1,000 apps;
no long task over 200 ms while 50 events/s stream in.

A fresh `manage.py serve` (SQLite, fresh data dir) watches 100 simulated nodes
(`manage.py simulate_fleet`, its own process) and holds 1,000 registered apps.
Headless Chromium (/usr/bin/chromium, never a downloaded browser) loads the page
in a fresh context each time; FCP is the Performance API's paint entry. Then one
page stays open while a paced producer makes 50 events a second, in turn an app
heartbeat that changes metadata (app_updated on /ws/applications), a reported
request batch (model_processing on /ws/ollama_activity) and a log POST (a line
on /ws/logs); a PerformanceObserver collects every long task meanwhile.

--against DIR compares first paint with another checkout of the project (`git
worktree add /tmp/base <commit>`, or `git archive <commit> | tar -x -C
/tmp/base`): its `manage.py serve` runs beside this one, on the same fleet with
the same apps, and the loads alternate between the two (which goes first, too),
so both see the same load from whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import run

import network

BASE = "127.6.0.1"
NODES = 100
APPS = 1000
RATE = 50.0
FCP_TARGET_MS = 1000.0
LONG_TASK_TARGET_MS = 200.0
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
"""
log = run.log


def post(port: int, path: str, body) -> int:
    request = urllib.request.Request(
        f"http://{run.HOST}:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def register_apps(port: int, count: int) -> None:
    for i in range(count):
        post(
            port,
            "/api/applications/register",
            {
                "app_id": f"bench-app-{i:04d}",
                "name": f"Bench application {i:04d}",
                "router_type": ("HybridRouter", "RayRouter", "OllamaPool")[i % 3],
                "version": f"1.{i % 7}.0",
                "metadata": {"env": ("prod", "staging")[i % 2], "index": i},
            },
        )


def produce(port: int, node: str, seconds: float, sent: list[int]) -> None:
    """Send RATE events a second, paced, until seconds have passed."""
    started = time.monotonic()
    i = 0
    while (now := time.monotonic()) - started < seconds:
        due = started + i / RATE
        if due > now:
            time.sleep(due - now)
        kind = i % 3
        if kind == 0:
            post(
                port,
                "/api/applications/heartbeat",
                {"app_id": f"bench-app-{i % APPS:04d}", "metadata": {"tick": i}},
            )
        elif kind == 1:
            post(
                port,
                "/api/activity",
                {
                    "app_id": "bench-app-0000",
                    "requests": [
                        {
                            "node": node,
                            "model": "llama3.2:3b",
                            "latency_ms": 200 + i % 90,
                        }
                    ],
                },
            )
        else:
            post(
                port,
                "/api/logs",
                [{"level": "INFO", "logger": "bench", "message": f"line {i}"}],
            )
        sent.append(kind)
        i += 1


def wait_in_page(page, expression: str, timeout: float = 30.0):
    """Poll an expression with evaluate (wait_for_function needs eval: CSP says no)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        page.wait_for_timeout(20)
    raise TimeoutError(f"{expression} stayed false for {timeout} s")


def first_paint(browser, url: str) -> tuple[float, int]:
    """Load the page in a fresh context; return its FCP (ms) and its app rows."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = context.new_page()
        page.goto(url, wait_until="load")
        wait_in_page(
            page, "performance.getEntriesByName('first-contentful-paint').length"
        )
        fcp = page.evaluate(
            "performance.getEntriesByName('first-contentful-paint')[0].startTime"
        )
        return fcp, page.locator("#apps-body tr").count()
    finally:
        context.close()


def measure(port: int, loads: int, seconds: float, other: int | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    url = f"http://{run.HOST}:{port}/"
    other_url = f"http://{run.HOST}:{other}/" if other else None
    fcps, rendered, other_fcps = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        try:
            # The first load (of each tree) warms caches; not counted. With
            # --against, which tree goes first alternates too.
            for i in range(loads + 1):
                turns = [(url, fcps, "")]
                if other_url:
                    turns.insert(i % 2, (other_url, other_fcps, " --against"))
                for where, kept, label in turns:
                    fcp, rows = first_paint(browser, where)
                    if i:
                        kept.append(fcp)
                        if where == url:
                            rendered.append(rows)
                    log(f"  load {i}{label}: FCP {fcp:.0f} ms, {rows} app rows")

            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.add_init_script(LONG_TASKS)
            page = context.new_page()
            page.goto(url, wait_until="load")
            wait_in_page(
                page, "document.getElementById('connection').dataset.state === 'live'"
            )
            page.wait_for_timeout(2000)
            # The observer works: the first render of 1,000 rows shows up here.
            load_tasks = page.evaluate("window.__longTasks")
            page.evaluate("window.__longTasks = []")
            sent: list[int] = []
            node = network.get_json(port, "/api/network/nodes")["nodes"][0]["address"]
            producer = threading.Thread(
                target=produce, args=(port, node, seconds, sent)
            )
            producer.start()
            while producer.is_alive():
                page.wait_for_timeout(500)  # keep Playwright's loop turning
            producer.join()
            page.wait_for_timeout(2000)
            tasks = page.evaluate("window.__longTasks")
            last_tick = page.locator(
                "#feed li[data-kind=applications] .msg"
            ).first.text_content()
            log_lines = page.locator("#logs-list li", has_text="line ").count()
            context.close()
        finally:
            browser.close()
    return {
        "fcp_ms": fcps,
        "other_fcp_ms": other_fcps,
        "rows": rendered,
        "events_sent": len(sent),
        "seconds": seconds,
        "long_tasks": tasks,
        "load_tasks": load_tasks,
        "last_feed_line": last_tick,
        "log_lines_shown": log_lines,
        "log_lines_sent": sent.count(2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--against", type=Path, help="another checkout to compare first paint with"
    )
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    info = run.machine()
    workspace = run.Workspace(keep=False)
    fleet = network.FleetProcess(workspace.root / "fleet", NODES, 0, BASE)
    servers = []
    try:
        fleet.start()
        # Apps registered once must not all go stale mid-run: that burst of
        # 1,000 app_stale events is not the steady 50 events/s measured here.
        env = network.network_env(
            ollama_nodes=",".join(fleet.urls),
            app_stale_after=600,
            app_remove_after=1200,
        )
        server = workspace.server("embedded", env)
        servers.append(server)
        if args.against:
            servers.append(
                run.Server(
                    run.KINDS["embedded"],
                    workspace.root / "against",
                    env,
                    root=args.against.resolve(),
                )
            )
        code = network.code_state()
        for each in servers:
            each.prepare()
            each.start()
        for each in servers:
            network.wait_until(
                lambda port=each.port: (
                    network.get_json(port, "/api/network/health")["nodes_healthy"]
                    == NODES
                ),
                60,
                f"{NODES} healthy nodes",
            )
            log(f"registering {APPS} applications on port {each.port}")
            register_apps(each.port, APPS)
        results = measure(
            server.port,
            args.loads,
            args.seconds,
            other=servers[1].port if args.against else None,
        )
    finally:
        for each in servers:
            each.stop()
        fleet.stop()
        workspace.close()
    against = None
    if args.against:
        against = (
            run.shell("git", "-C", str(args.against), "rev-parse", "--short", "HEAD")
            if (args.against / ".git").exists()
            else str(args.against)
        )
    report = render(results, info, started, code, fleet.command, against)
    print(report)
    if not args.no_write:
        run.write_results(report, info)
    return 0


def against_rows(fcps: list[float], other: list[float], against: str) -> list[str]:
    """Return the rows comparing first paint with --against, load by load."""
    slower = [mine - theirs for mine, theirs in zip(fcps, other, strict=True)]
    return [
        f"| first contentful paint of `{against}` (--against, same fleet, loads "
        f"alternating): median / max | {statistics.median(other):.0f} / "
        f"{max(other):.0f} ms | | |",
        f"| this tree minus `{against}`, load by load: median / mean; loads "
        f"slower | {statistics.median(slower):+.0f} / {statistics.mean(slower):+.0f}"
        f" ms; {sum(d > 0 for d in slower)} of {len(slower)} | | |",
    ]


def render(results, info, started, code, fleet_command, against=None) -> str:
    command = " ".join(["bench/page.py", *sys.argv[1:]])
    fcps = results["fcp_ms"]
    tasks = sorted(results["long_tasks"])
    worst = tasks[-1] if tasks else 0.0
    rate = results["events_sent"] / results["seconds"]
    met = {True: "yes", False: "no"}
    all_logs = results["log_lines_shown"] >= results["log_lines_sent"]
    return "\n".join(
        [
            f"\n## {started:%Y-%m-%d %H:%M} UTC: {code}, the browser dashboard\n",
            f"Written by `.venv/bin/python {command}`. Machine: {info['nproc']} CPUs, "
            f"Python {info['python']}, load {info['load']} at start. Fleet: "
            f"`{fleet_command}`; dashboard `manage.py serve` (SQLite) watching "
            f"{NODES} nodes with {APPS} registered applications; headless Debian "
            "Chromium (/usr/bin/chromium) on the same machine.\n",
            "| measure | value | target | met |",
            "|---|---|---|---|",
            f"| first contentful paint, {len(fcps)} fresh loads: median / max | "
            f"{statistics.median(fcps):.0f} / {max(fcps):.0f} ms | ≤ "
            f"{FCP_TARGET_MS:.0f} ms | {met[max(fcps) <= FCP_TARGET_MS]} |",
            *(against_rows(fcps, results["other_fcp_ms"], against) if against else []),
            f"| application rows in the page after load | {min(results['rows'])} | "
            f"{APPS} | {'yes' if min(results['rows']) >= APPS else 'no'} |",
            f"| longest task while {rate:.0f} events/s streamed for "
            f"{results['seconds']:.0f} s | {worst:.0f} ms | ≤ "
            f"{LONG_TASK_TARGET_MS:.0f} ms | "
            f"{'yes' if worst <= LONG_TASK_TARGET_MS else 'no'} |",
            f"| long tasks (> 50 ms) meanwhile | {len(tasks)} | | |",
            f"| log lines the page showed / sent meanwhile | "
            f"{results['log_lines_shown']} / {results['log_lines_sent']} | all | "
            f"{met[all_logs]} |",
            f"| long tasks while the page loaded (observer check) | "
            f"{len(results['load_tasks'])}, longest "
            f"{max(results['load_tasks'], default=0):.0f} ms | | |",
            "",
            "Events were, in turn, heartbeats that changed an app's metadata "
            "(app_updated), reported request batches (model_processing) and log "
            "lines (log_batch). Newest applications line in the feed at the end: "
            f"`{results['last_feed_line']}`.\n",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())

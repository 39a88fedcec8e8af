"""Benchmark: a model loaded on a simulated node → `model_loaded` on the socket.

    .venv/bin/python bench/activity.py                 # 30 loads and 30 unloads
    .venv/bin/python bench/activity.py --trials 10 --no-write

Target (issue 4): the event arrives within probe interval + 0.5 s (1.5 s at the
1 s interval used here; timeout 1 s).

A fresh `manage.py serve` (SQLite, fresh data dir) watches 3 simulated nodes
(`manage.py simulate_fleet`, its own process, on 127.4.0.1-3), probed every 1 s.
Each trial waits a random phase of the probe cycle, loads a model on one node
through the fleet's control API (keep_alive forever, so nothing expires on its
own), and times the control request to the event on the socket; then it unloads
the model and times `model_unloaded` the same way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time

import run

import network

BASE = "127.4.0.1"
INTERVAL = 1.0
TIMEOUT = 1.0
TARGET_S = INTERVAL + 0.5
MODELS = ("llama3.2:3b", "qwen2.5:7b", "mistral:7b", "phi3:mini")
log = run.log


def trial(fleet, stream, chooser: random.Random, index: int, model: str) -> dict:
    node = fleet.urls[index].split("://", 1)[1]
    times = {}
    for action, event_type, body in (
        ("load", "model_loaded", {"model": model, "keep_alive": -1}),
        ("unload", "model_unloaded", {"model": model}),
    ):
        time.sleep(chooser.uniform(0, INTERVAL))  # a random phase of the cycle
        started = time.monotonic()
        fleet.control(f"/nodes/{index}/{action}", body)

        def wanted(event: dict, event_type=event_type) -> bool:
            return (
                event["type"] == event_type
                and event["node"] == node
                and event["model"] == model
            )

        received, _, event = stream.wait(wanted, timeout=30)
        times[action] = received - started
        if action == "load":
            times["message"] = event["message"]
            times["vram_gb"] = event["vram_gb"]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    info = run.machine()
    workspace = run.Workspace(keep=False)
    fleet = network.FleetProcess(workspace.root / "fleet", 3, 0, BASE)
    server = None
    rows = []
    try:
        fleet.start()
        fleet.pin_loaded()
        env = network.network_env(
            ollama_nodes=",".join(fleet.urls),
            probe_interval=INTERVAL,
            probe_timeout=TIMEOUT,
        )
        server = workspace.server("embedded", env)
        server.prepare()
        code = network.code_state()
        server.start()
        network.wait_until(
            lambda: (
                network.get_json(server.port, "/api/network/health")["nodes_healthy"]
                == 3
            ),
            30,
            "3 healthy nodes",
        )
        stream = network.Stream(server.port, "/ws/ollama_activity")
        chooser = random.Random(4)
        try:
            for i in range(args.trials):
                model = MODELS[i % len(MODELS)]
                row = trial(fleet, stream, chooser, i % 3, f"bench-{i}-{model}")
                rows.append(row)
                log(
                    f"  #{i + 1}: loaded → event {row['load']:.2f} s, "
                    f"unloaded → event {row['unload']:.2f} s"
                )
        finally:
            stream.close()
    finally:
        if server is not None:
            server.stop()
        fleet.stop()
        workspace.close()
    report = render(rows, info, started, code, fleet.command)
    print(report)
    if not args.no_write:
        run.write_results(report, info)
    return 0


def render(rows, info, started, code, fleet_command) -> str:
    command = " ".join(["bench/activity.py", *sys.argv[1:]])
    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: {code}, model lifecycle events\n",
        f"Written by `.venv/bin/python {command}`. Machine: {info['nproc']} CPUs, "
        f"Python {info['python']}, load {info['load']} at start. Fleet: "
        f"`{fleet_command}`; dashboard `manage.py serve` (SQLite) probing every "
        f"{INTERVAL:.0f} s with a {TIMEOUT:.0f} s timeout. From the control request "
        "(at a random phase of the probe cycle) to the event on /ws/ollama_activity.\n",
        "| event | trials | median s | p95 s | max s | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for action, event in (("load", "model_loaded"), ("unload", "model_unloaded")):
        values = sorted(row[action] for row in rows)
        p95 = values[min(len(values) - 1, round(0.95 * len(values) + 0.5) - 1)]
        out.append(
            f"| {event} | {len(values)} | {statistics.median(values):.2f} | "
            f"{p95:.2f} | {values[-1]:.2f} | ≤ {TARGET_S:.1f} s | "
            f"{'yes' if values[-1] <= TARGET_S else 'no'} |"
        )
    out.append(f"\nExample message: `{rows[0]['message']}`\n")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())

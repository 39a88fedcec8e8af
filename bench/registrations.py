"""Registrations against heartbeats on `serve`: a fleet registering at once.

    .venv/bin/python bench/registrations.py [--apps 5000] [--rounds 3]

A fresh embedded server (run.Server, SQLite), then over 20 kept-alive connections,
as fast as they go: APPS new registrations, the same APPS registered again
(updates, as after a dashboard restart), and APPS heartbeats, for the ratio, in
one run. Prints requests/s and latency p50/p99 of each phase, per round and the
median; compare within a run (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics

import paced
import run

CONNECTIONS = 20


def closed(port: int, requests: list[bytes]) -> dict:
    """paced.closed, with the latencies' p50 and p99 in ms."""
    result = paced.closed(run.HOST, port, requests, connections=CONNECTIONS)
    latencies = result["latencies"]
    return {
        **result,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def one_round(workspace: run.Workspace, apps: int) -> dict[str, dict]:
    server = workspace.server("embedded")
    server.prepare()
    server.start()
    try:
        register = [
            paced.post_request(
                run.HOST,
                server.port,
                "/api/applications/register",
                paced.heartbeat_body(i),
            )
            for i in range(apps)
        ]
        heartbeat = [
            paced.post_request(
                run.HOST,
                server.port,
                "/api/applications/heartbeat",
                paced.heartbeat_body(i),
            )
            for i in range(apps)
        ]
        results = {
            "register (new)": closed(server.port, register),
            "register (again)": closed(server.port, register),
            "heartbeat": closed(server.port, heartbeat),
        }
    finally:
        server.stop()
    for name, result in results.items():
        if set(result["statuses"]) != {"200"}:
            raise RuntimeError(f"{name}: {result['statuses']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workspace = run.Workspace(keep=False)
    rounds = []
    try:
        for number in range(1, args.rounds + 1):
            rounds.append(one_round(workspace, args.apps))
            for name, r in rounds[-1].items():
                print(
                    f"round {number} {name}: {r['rate']:,.0f}/s, "
                    f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms",
                    flush=True,
                )
    finally:
        workspace.close()
    print("\n| phase | requests/s | p50 ms | p99 ms |\n|---|---|---|---|")
    for name in rounds[0]:
        rate = statistics.median(r[name]["rate"] for r in rounds)
        p50 = statistics.median(r[name]["p50"] for r in rounds)
        p99 = statistics.median(r[name]["p99"] for r in rounds)
        print(f"| {name} | {rate:,.0f} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()

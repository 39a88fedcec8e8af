"""Benchmark: 1,000 simulated nodes of mixed kinds, probed by `manage.py serve`.

    .venv/bin/python bench/mixed_fleet.py            # 1,000 nodes, about 4 minutes
    .venv/bin/python bench/mixed_fleet.py --nodes 100 --seconds 20   # smoke test

The fleet (its own process, `--serve`): a quarter each of Ollama nodes
(simulator.ollama), llama-servers with /metrics and /slots, vLLM servers (their
/metrics always on), and LM Studio and LocalAI servers (no metrics this
dashboard reads): half the fleet with /metrics. All are declared in
SOLLOL_NODES with their kinds.

(1) interval 5 s: the dashboard's CPU (cores, the serve process and its
children) over --seconds, and whether every node was probed every round (each
node's last probe younger than the interval plus the cycle). Goal: ≤ 0.3 cores.
(2) interval 1 s, a dashboard watching three nodes of each kind: each dies in
turn, at a random moment (the simulator drops its socket and refuses); the time
until its status_change reaches a /ws/network/nodes socket. Goal: median ≤ 1 s
whatever the kind. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

KINDS = ("ollama", "llamacpp", "vllm", "lmstudio", "localai")


def serve_fleet(count: int, ready: Path, *, ollama_only: bool = False) -> None:
    """The fleet's process: start the nodes, write their URLs, obey stdin."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sollol_site.settings")
    sys.path.insert(0, str(run.REPO))
    import django

    django.setup()
    from simulator.ollama import running_fleet
    from simulator.servers import SimulatedServer, running_servers

    quarter = count if ollama_only else count // 4
    servers = []
    for index in range(count - quarter):
        kind = ("llamacpp", "vllm", "lmstudio" if index % 2 else "localai")[index % 3]
        host = f"127.0.{10 + index // 250}.{1 + index % 250}"
        servers.append(SimulatedServer(kind, host))
    with (
        running_fleet(quarter, base="127.0.40.1", port=0, seed=2) as fleet,
        running_servers(*servers),
    ):
        nodes = [
            ("ollama", url, node)
            for url, node in zip(fleet.urls, fleet.nodes, strict=True)
        ]
        nodes += [(s.kind, s.url, s) for s in servers]
        ready.write_text(json.dumps([[kind, url] for kind, url, _ in nodes]))
        for line in sys.stdin:
            index = int(line.split()[1])
            nodes[index][2].die()
            print("ok", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ollama-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_fleet(args.nodes, args.serve, ollama_only=args.ollama_only)
        return
    root = Path(tempfile.mkdtemp(prefix="sollol-bench-mixed-"))
    results: dict = {"nodes": args.nodes, "load": os.getloadavg()}
    # The floor, in the same run: as many Ollama nodes alone.
    baseline = fleet_of(root / "ollama", args.nodes, ollama_only=True)
    try:
        nodes = _ready(baseline, root / "ollama" / "fleet.json")
        declared = ",".join(url for _, url in nodes)
        results["baseline"] = probe_load(
            root / "ollama", declared, len(nodes), args.seconds
        )
    finally:
        _stop(baseline)
    ready = root / "fleet.json"
    fleet = fleet_of(root, args.nodes)
    try:
        nodes = _ready(fleet, ready)
        declared = ",".join(
            f"{kind}+{url}" if kind != "ollama" else url for kind, url in nodes
        )
        results["cpu"] = probe_load(root, declared, len(nodes), args.seconds)
        results["death"] = deaths(nodes, fleet, root)
    finally:
        _stop(fleet)
    write(results, to_file=not args.no_write)


def fleet_of(root: Path, count: int, *, ollama_only: bool = False) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    argv = [str(run.PYTHON), __file__, "--serve", str(root / "fleet.json")]
    argv += ["--nodes", str(count)] + (["--ollama-only"] if ollama_only else [])
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=run.REPO
    )


def _ready(fleet: subprocess.Popen, ready: Path) -> list:
    deadline = time.monotonic() + 120
    while not ready.exists():
        if fleet.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the fleet did not start")
        time.sleep(0.2)
    time.sleep(0.5)  # written whole
    return json.loads(ready.read_text())


def _stop(fleet: subprocess.Popen) -> None:
    fleet.stdin.close()
    fleet.terminate()
    fleet.wait(30)


def _server(root: Path, declared: str, interval: str) -> run.Server:
    env = {
        "SOLLOL_NODES": declared,
        "SOLLOL_PROBE_INTERVAL": interval,
        "SOLLOL_PROBE_TIMEOUT": "1",
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        "SOLLOL_CAPTURE_LOGS": "false",
    }
    server = run.Server(run.KINDS["embedded"], root / f"serve-{interval}", env)
    server.prepare()
    server.start(timeout=120)
    return server


def _nodes(server: run.Server) -> list[dict]:
    import http.client

    connection = http.client.HTTPConnection(run.HOST, server.port, timeout=30)
    try:
        connection.request("GET", "/api/network/nodes?limit=1000")
        return json.loads(connection.getresponse().read())["nodes"]
    finally:
        connection.close()


def probe_load(root: Path, declared: str, count: int, seconds: float) -> dict:
    run.log(f"(1) {count} nodes at interval 5 s")
    server = _server(root, declared, "5")
    try:
        deadline = time.monotonic() + 90
        while True:
            listed = _nodes(server)
            healthy = sum(n["status"] == "healthy" for n in listed)
            if healthy == count or time.monotonic() > deadline:
                break
            time.sleep(2)
        run.log(f"    {healthy}/{count} healthy; measuring {seconds:g} s")
        cpu = server.tree_cpu_seconds()
        began = time.monotonic()
        time.sleep(seconds)
        cores = (server.tree_cpu_seconds() - cpu) / (time.monotonic() - began)
        listed = _nodes(server)
        now = time.time()
        ages = sorted(now - n["last_probe"] for n in listed if n["last_probe"])
        return {
            "cores": cores,
            "healthy": healthy,
            "probed": len(ages),
            "oldest_probe_s": ages[-1] if ages else None,
            "kinds": sorted({n["kind"] for n in listed}),
        }
    finally:
        server.stop()


def deaths(nodes: list, fleet: subprocess.Popen, root: Path) -> dict:
    """A dashboard watching three nodes of each kind, at interval 1 s (as
    bench/network.py's failure-to-event part: a cycle of 1,000 nodes takes
    longer than one second on two cores, whatever their kind)."""
    from websockets.sync.client import connect

    victims: dict[str, list] = {}
    for index, (kind, node_url) in enumerate(nodes):
        if len(victims.setdefault(kind, [])) < 3:
            victims[kind].append((index, node_url))
    declared = ",".join(
        f"{kind}+{url}" if kind != "ollama" else url
        for kind, chosen in victims.items()
        for _, url in chosen
    )
    run.log(f"(2) deaths at interval 1 s, {declared.count(',') + 1} nodes watched")
    server = _server(root, declared, "1")
    noticed: dict[str, list[float]] = {}
    chance = random.Random(13)
    try:
        time.sleep(4)  # every node probed, healthy
        url = f"ws://{run.HOST}:{server.port}/ws/network/nodes"
        with connect(url, open_timeout=10, max_size=None) as socket:
            for kind, chosen in victims.items():
                for index, node_url in chosen:
                    # At a random moment of the interval, not just after a probe.
                    time.sleep(chance.uniform(0, 1))
                    fleet.stdin.write(f"die {index}\n")
                    fleet.stdin.flush()
                    fleet.stdout.readline()
                    killed = time.monotonic()
                    while True:
                        event = json.loads(socket.recv(timeout=15))
                        if (
                            event.get("type") == "status_change"
                            and event.get("node") == node_url
                        ):
                            break
                    noticed.setdefault(kind, []).append(time.monotonic() - killed)
    finally:
        server.stop()
    return noticed


def write(results: dict, *, to_file: bool) -> None:
    cpu, death, floor = results["cpu"], results["death"], results["baseline"]
    every = [t for times in death.values() for t in times]
    median = statistics.median(every)
    code = run.shell("git", "rev-parse", "--short", "HEAD")
    report = [
        f"\n## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC: commit {code}, "
        f"{results['nodes']:,} nodes of mixed kinds (bench/mixed_fleet.py)\n",
        f"Load average at start {' '.join(f'{x:.2f}' for x in results['load'])}. "
        f"Kinds: {', '.join(cpu['kinds'])}; half with /metrics.\n",
        "| figure | goal | measured | met |",
        "|---|---|---|---|",
        f"| CPU at interval 5 s (serve and its children) | ≤ 0.3 cores | "
        f"{cpu['cores']:.3f} cores ({results['nodes']:,} Ollama nodes alone, same run: "
        f"{floor['cores']:.3f}, ×{cpu['cores'] / floor['cores']:.2f}) | "
        f"{'yes' if cpu['cores'] <= 0.3 else '**no**'} |",
        f"| every node every round | all | {cpu['probed']:,} probed, oldest last probe "
        f"{cpu['oldest_probe_s']:.1f} s ago, {cpu['healthy']:,} healthy | "
        f"{'yes' if cpu['probed'] == results['nodes'] and cpu['oldest_probe_s'] < 10 else '**no**'} |",  # noqa: E501
        f"| a death to the WebSocket at interval 1 s, median | ≤ 1 s | {median:.2f} s "
        f"({'; '.join(f'{k} {statistics.median(v):.2f}' for k, v in death.items())}) | "
        f"{'yes' if median <= 1.0 else '**no**'} |",
    ]
    text = "\n".join(report) + "\n"
    if to_file:
        with run.RESULTS.open("a") as out:
            out.write(text)
    print(text)


if __name__ == "__main__":
    main()

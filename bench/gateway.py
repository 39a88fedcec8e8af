"""Benchmark the gateway against the node itself and nginx; append to RESULTS.md.

    .venv/bin/python bench/gateway.py            # full run, about 10 minutes
    .venv/bin/python bench/gateway.py --quick    # smoke test, about 3 minutes

One simulated node that answers at once (`manage.py simulate_fleet`, its own
process) is asked the same non-streamed /api/chat three ways, in turns: directly
(the floor), through Debian's nginx as a plain reverse proxy with keep-alive to
the node (the ceiling for a proxy), and through the gateway (`manage.py serve
--gateway-port`, `daphne sollol_site.asgi:gateway` and `manage.py gateway`). The
gateway's node limit is raised out of the way (SOLLOL_GATEWAY_NODE_CONCURRENCY=4096):
what is measured is the cost of passing a request on, not queueing.

(a) paced 500 requests/s (bench/paced.py, open loop): added latency = the
gateway's percentile minus the node's; (b) saturation with wrk, 50 connections,
recording on and off (SOLLOL_GATEWAY_RECORD); (c) 1,000 streams of 200 tokens at
50 tokens/s at once (bench/streams.py, its own process): the gaps between a
stream's lines, the gateway's CPU and its memory per open stream.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paced
import run
from run import HOST, PYTHON, REPO, Kind, Server, free_port, log

NODE_HOST = "127.0.0.51"
NGINX_HOST = "127.0.0.52"
CHAT = (
    b'{"model":"llama3.2:3b","messages":[{"role":"user","content":'
    b'"Why is the sky blue?"}],"stream":false}'
)
PACED_RATE = 500.0
PACED_WARMUP = 2.0
CONNECTIONS = 50
STREAMS, TOKENS, TOKEN_RATE = 1000, 200, 50.0
TARGETS = {
    "added_p50_ms": 0.5,
    "added_p99_ms": 2.0,
    "saturation_serve": 3000.0,
    "stream_gap_added_p99_ms": 5.0,
    "stream_cores": 1.0,
    "stream_kb": 64.0,
    "recording_cost": 0.15,
}
NGINX_CONFIG = """
{user}
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    access_log off;
    upstream node {{ {servers} keepalive 64; }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {host};
            proxy_buffering off;
        }}
    }}
}}
"""


def gateway_kind(gateway_port: int) -> Kind:
    return Kind(
        "serve",
        "gateway on `manage.py serve --gateway-port`",
        True,
        lambda port: [
            str(PYTHON),
            *f"manage.py serve --host {HOST} --port {port}".split(),
            *f"--gateway-port {gateway_port}".split(),
        ],
    )


DAPHNE_GATEWAY = Kind(
    "daphne",
    "gateway on `daphne sollol_site.asgi:gateway`",
    False,
    lambda port: [
        str(run.DAPHNE),
        *f"-b {HOST} -p {port} sollol_site.asgi:gateway".split(),
    ],
)


GATEWAY_COMMAND = Kind(
    "gateway",
    "gateway on `manage.py gateway`",
    False,
    lambda port: [
        str(PYTHON),
        *f"manage.py gateway --host {HOST} --port {port}".split(),
    ],
)


class Node:
    """One simulated node in its own process, driven through its control port."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.control = free_port()
        self.log = (root / "node.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(PYTHON),
                *"manage.py simulate_fleet --nodes 1 --rpc 0".split(),
                *f"--base {NODE_HOST} --port {self.port} --seed 1".split(),
                *f"--control-port {self.control}".split(),
            ],
            cwd=REPO,
            env={**run.server_env(root / "node"), "SOLLOL_CAPTURE_LOGS": "false"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulated node did not start")
            time.sleep(0.1)
        self.act("pull", {"model": "llama3.2:3b"})
        self.act("load", {"model": "llama3.2:3b", "keep_alive": -1})

    @property
    def address(self) -> str:
        return f"{NODE_HOST}:{self.port}"

    def _answers(self) -> bool:
        try:
            self.act_raw("GET", "/health")
            return True
        except OSError:
            return False

    def act_raw(self, method: str, path: str, body: dict | None = None) -> dict:
        import http.client

        connection = http.client.HTTPConnection(HOST, self.control, timeout=10)
        try:
            connection.request(
                method, path, json.dumps(body or {}) if method == "POST" else None
            )
            reply = connection.getresponse()
            data = json.loads(reply.read() or b"{}")
            if reply.status != 200:
                raise RuntimeError(f"{path}: {reply.status} {data}")
            return data
        finally:
            connection.close()

    def act(self, action: str, body: dict | None = None) -> dict:
        return self.act_raw("POST", f"/nodes/0/{action}", body)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / run.CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Nginx:
    """Debian's nginx as a plain reverse proxy (round robin over upstreams, each
    "host:port"), stopped by its PID. It sends each the Host `host` (default: the
    first upstream's own; Ollama refuses names it does not know)."""

    def __init__(
        self,
        root: Path,
        upstreams: str | list[str],
        listen_host: str = NGINX_HOST,
        host: str | None = None,
    ) -> None:
        self.root = root
        self.host = listen_host
        self.port = free_port()
        upstreams = [upstreams] if isinstance(upstreams, str) else upstreams
        user = "user root;" if os.geteuid() == 0 else ""
        listen = f"{listen_host}:{self.port}"
        servers = " ".join(f"server {upstream};" for upstream in upstreams)
        (root / "nginx.conf").write_text(
            NGINX_CONFIG.format(
                user=user,
                root=root,
                servers=servers,
                host=host or upstreams[0],
                listen=listen,
            )
        )
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if binary is None:
            raise SystemExit("nginx is not installed (apt-get install nginx)")
        self.process = subprocess.Popen(
            [binary, "-c", f"{root}/nginx.conf", "-p", str(root), "-e",
             f"{root}/error.log", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        if self.process.poll() is not None:
            raise RuntimeError((root / "error.log").read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


def wait_for_model(port: int, timeout: float = 30.0) -> None:
    """Wait until the gateway on port lists the model (it has read the node)."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            connection.request("GET", "/api/tags")
            body = connection.getresponse().read()
            if b'"llama3.2:3b"' in body:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError(f"the gateway on {port} never listed llama3.2:3b")


def paced_run(host: str, port: int, seconds: float) -> dict:
    request = paced.post_request(host, port, "/api/chat", CHAT)
    return paced.paced(
        host,
        port,
        [request],
        rate=PACED_RATE,
        duration=seconds,
        warmup=PACED_WARMUP,
        connections=CONNECTIONS,
    )


def wrk_run(host: str, port: int, seconds: float) -> dict:
    url = f"http://{host}:{port}/api/chat"
    completed = subprocess.run(
        [run.WRK, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency",
         "-s", "bench/gateway.lua", url],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(
        line for line in completed.stdout.splitlines() if line.startswith("BENCH_JSON")
    )
    result = json.loads(line.split(" ", 1)[1])
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 15.0
    rounds = 1 if args.quick else 3
    streams = 200 if args.quick else STREAMS
    started = dt.datetime.now(dt.UTC)
    info = {
        "code": run.shell("git", "rev-parse", "--short", "HEAD"),
        "dirty": bool(
            run.shell("git", "status", "--porcelain", "--untracked-files=no")
        ),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "wrk": run.shell(run.WRK, "--version").splitlines()[0],
        "nginx": run.shell("/usr/sbin/nginx", "-v") or "nginx",
    }
    root = Path(tempfile.mkdtemp(prefix="sollol-bench-gateway-"))
    node = nginx = None
    servers: list[Server] = []
    results: dict = {"info": info, "paced": [], "wrk": [], "streams": {}}
    try:
        node = Node(root)
        nginx = Nginx(root, node.address)
        env = {
            "SOLLOL_OLLAMA_NODES": f"http://{node.address}",
            "SOLLOL_DISCOVER_LOCALHOST": "false",
            "SOLLOL_GATEWAY_NODE_CONCURRENCY": "4096",
            "SOLLOL_GATEWAY_QUEUE_TIMEOUT": "60",
            "SOLLOL_CAPTURE_LOGS": "false",
        }
        gateways = {}
        for name, record in (("serve", "true"), ("serve-unrecorded", "false")):
            port = free_port()
            server = Server(
                gateway_kind(port),
                root / name,
                {**env, "SOLLOL_GATEWAY_RECORD": record},
            )
            server.prepare()
            server.start()
            servers.append(server)
            wait_for_model(port)
            gateways[name] = (port, server)
        # The production servers, on serve's database.
        for name, kind in (("daphne", DAPHNE_GATEWAY), ("gateway", GATEWAY_COMMAND)):
            server = Server(
                kind, root / "serve", {**env, "SOLLOL_GATEWAY_RECORD": "true"}
            )
            server.start()
            servers.append(server)
            wait_for_model(server.port)
            gateways[name] = (server.port, server)
        # nginx sends the node its own Host (Ollama refuses names it does not know).
        targets = {
            "node": (NODE_HOST, node.port),
            "nginx": (NGINX_HOST, nginx.port),
            "serve": (HOST, gateways["serve"][0]),
            "daphne": (HOST, gateways["daphne"][0]),
            "gateway": (HOST, gateways["gateway"][0]),
        }
        targets["serve-unrecorded"] = (HOST, gateways["serve-unrecorded"][0])
        for number in range(rounds):
            for name, (host, port) in targets.items():
                log(f"(a) round {number + 1}: paced {PACED_RATE:g}/s to {name}")
                server = gateways.get(name, (0, None))[1]
                cpu = server.tree_cpu_seconds() if server else 0.0
                outcome = paced_run(host, port, seconds)
                if server:
                    sent = PACED_RATE * (seconds + PACED_WARMUP)
                    outcome["cpu_us_per_request"] = (
                        (server.tree_cpu_seconds() - cpu) / sent * 1e6
                    )
                results["paced"].append({"target": name, "round": number, **outcome})
        for number in range(rounds):
            for name, (host, port) in targets.items():
                log(f"(b) round {number + 1}: wrk -c{CONNECTIONS} to {name}")
                results["wrk"].append(
                    {"target": name, "round": number, **wrk_run(host, port, seconds)}
                )
        try:
            node.act(
                "generation",
                {
                    "token_rate": TOKEN_RATE,
                    "num_parallel": 4 * streams,
                    "max_queue": 512,
                },
            )
            for name, port, server in (
                ("node", node.port, None),
                ("serve", gateways["serve"][0], gateways["serve"][1]),
            ):
                host = NODE_HOST if name == "node" else HOST
                log(f"(c) {streams} streams of {TOKENS} tokens to {name}")
                cpu_node = node.cpu_seconds()
                began = time.monotonic()
                outcome = streams_run_at(host, port, streams, server)
                outcome["node_cores"] = (node.cpu_seconds() - cpu_node) / (
                    time.monotonic() - began
                )
                results["streams"][name] = outcome
        except Exception as exc:  # (a) and (b) are still worth writing down
            log(f"(c) failed: {exc}")
            results["streams_error"] = str(exc)
    finally:
        for server in servers:
            server.stop()
        if nginx is not None:
            nginx.stop()
        if node is not None:
            node.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    info["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    report = render(results, started, args.quick)
    if not args.no_write:
        with run.RESULTS.open("a") as out:
            out.write(report)
        log(f"appended to {run.RESULTS}")
    print(report)


def streams_run_at(host: str, port: int, streams: int, server: Server | None) -> dict:
    ready = Path(tempfile.mktemp(prefix="streams-ready-"))
    client = subprocess.Popen(
        [str(PYTHON), "bench/streams.py", "--port", str(port), "--host", host,
         "--streams", str(streams), "--tokens", str(TOKENS),
         "--ready-file", str(ready)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    rss_idle = server.status_kb("VmRSS") if server else 0
    cpu_before = server.cpu_seconds() if server else 0.0
    started = time.monotonic()
    rss_peak = rss_idle
    while client.poll() is None:
        if server is not None:
            rss_peak = max(rss_peak, server.status_kb("VmRSS"))
        time.sleep(0.05)
    wall = time.monotonic() - started
    output = client.stdout.read()
    ready.unlink(missing_ok=True)
    if client.returncode != 0:
        raise RuntimeError(f"bench/streams.py failed: {output}")
    result = json.loads(output)
    result["wall_measured_s"] = wall
    if server is not None:
        result["cores"] = (server.cpu_seconds() - cpu_before) / wall
        result["rss_idle_kb"] = rss_idle
        result["rss_peak_kb"] = rss_peak
        result["kb_per_stream"] = (rss_peak - rss_idle) / streams
    return result


# --- RESULTS.md ----------------------------------------------------------------------


def _median(rows: list[dict], target: str, key) -> float:
    return statistics.median(key(r) for r in rows if r["target"] == target)


def render(results: dict, started: dt.datetime, quick: bool) -> str:
    info = results["info"]
    paced_rows, wrk_rows, streams = results["paced"], results["wrk"], results["streams"]

    def lat(target: str, q: str) -> float:
        return _median(paced_rows, target, lambda r: r["latency"][f"{q}_ms"])

    def rate(target: str) -> float:
        return _median(wrk_rows, target, lambda r: r["rate"])

    added = {
        name: {q: lat(name, q) - lat("node", q) for q in ("p50", "p99")}
        for name in ("nginx", "serve", "daphne", "gateway")
    }
    recording_cost = 1 - rate("serve") / rate("serve-unrecorded")
    gap = {name: streams[name]["gap_ms"]["0.99"] for name in streams if streams[name]}
    stream_added = gap.get("serve", 0.0) - gap.get("node", 0.0)
    served = streams.get("serve", {})
    kind = "quick smoke test" if quick else "full run"
    dirty = " (with uncommitted changes)" if info["dirty"] else ""
    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit {info['code']}{dirty}, the "
        f"gateway, {kind}\n",
        "Written by `bench/gateway.py` (`.venv/bin/python bench/gateway.py"
        + "".join(f" {a}" for a in sys.argv[1:])
        + f"`). Machine: {info['nproc']} CPUs, Python {info['python']}, "
        f"{info['wrk']}, {info['nginx']}. Load average {info['load']} at start, "
        f"{info['load_after']} at end. One simulated node answering at once "
        "(`simulate_fleet`, its own process); nginx as a plain keep-alive reverse "
        "proxy; the gateway on `serve --gateway-port`, on daphne and on "
        "`manage.py gateway`, "
        "`SOLLOL_GATEWAY_NODE_CONCURRENCY=4096`. Medians of the rounds.\n",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]

    def row(name: str, goal: str, measured: str, met: bool) -> None:
        out.append(f"| {name} | {goal} | {measured} | {'yes' if met else '**no**'} |")

    for name, label in (
        ("serve", "serve"),
        ("daphne", "daphne"),
        ("gateway", "manage.py gateway"),
    ):
        ratio_50 = (
            added[name]["p50"] / added["nginx"]["p50"]
            if added["nginx"]["p50"] > 0
            else float("nan")
        )
        row(
            f"added latency, paced {PACED_RATE:g}/s, {label}: p50",
            f"≤ {TARGETS['added_p50_ms']} ms",
            f"{added[name]['p50']:.2f} ms (nginx {added['nginx']['p50']:.2f} ms, "
            f"{ratio_50:.1f}×)",
            added[name]["p50"] <= TARGETS["added_p50_ms"],
        )
        row(
            f"added latency, paced {PACED_RATE:g}/s, {label}: p99",
            f"≤ {TARGETS['added_p99_ms']} ms",
            f"{added[name]['p99']:.2f} ms (nginx {added['nginx']['p99']:.2f} ms)",
            added[name]["p99"] <= TARGETS["added_p99_ms"],
        )
    row(
        f"saturation, {CONNECTIONS} connections, serve",
        f"≥ {TARGETS['saturation_serve']:,.0f} req/s",
        f"{rate('serve'):,.0f} req/s (manage.py gateway {rate('gateway'):,.0f}, "
        f"daphne {rate('daphne'):,.0f}, nginx "
        f"{rate('nginx'):,.0f}, node {rate('node'):,.0f})",
        rate("serve") >= TARGETS["saturation_serve"],
    )
    cpu = {
        name: _median(paced_rows, name, lambda r: r["cpu_us_per_request"])
        for name in ("serve", "serve-unrecorded")
    }
    cpu_cost = cpu["serve"] / cpu["serve-unrecorded"] - 1
    # Reported beside the goal, which is about throughput: the CPU the records
    # take, the gateway's and its writer process's, when the gateway is not busy.
    out.append(
        f"| what recording costs (serve, CPU a request at {PACED_RATE:g}/s, the "
        f"gateway and its writer process) | reported | +{cpu_cost:.1%} "
        f"({cpu['serve']:,.0f} vs {cpu['serve-unrecorded']:,.0f} µs unrecorded) "
        "| — |"
    )
    row(
        "what recording costs (serve, saturation)",
        f"≤ {TARGETS['recording_cost']:.0%}",
        f"{recording_cost:.1%} ({rate('serve'):,.0f} vs "
        f"{rate('serve-unrecorded'):,.0f} req/s unrecorded)",
        recording_cost <= TARGETS["recording_cost"],
    )
    if served:
        row(
            f"{served['streams']:,} streams × {TOKENS} tokens at {TOKEN_RATE:g}/s: "
            "added inter-chunk p99",
            f"≤ {TARGETS['stream_gap_added_p99_ms']} ms",
            f"{stream_added:.2f} ms (node {gap.get('node', 0):.2f}, gateway "
            f"{gap.get('serve', 0):.2f})",
            stream_added <= TARGETS["stream_gap_added_p99_ms"],
        )
        row(
            "… gateway CPU",
            f"≤ {TARGETS['stream_cores']} core",
            f"{served['cores']:.2f} cores",
            served["cores"] <= TARGETS["stream_cores"],
        )
        row(
            "… gateway memory per open stream",
            f"≤ {TARGETS['stream_kb']:g} KB",
            f"{served['kb_per_stream']:.1f} KB (RSS {served['rss_idle_kb'] // 1024} → "
            f"{served['rss_peak_kb'] // 1024} MB)",
            served["kb_per_stream"] <= TARGETS["stream_kb"],
        )
    out.append("\n(a) paced, per round (latency from the scheduled send, ms):\n")
    out.append(
        "| target | round | ok | p50 | p90 | p99 | p99.9 | send lag p99 "
        "| CPU µs a request |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in paced_rows:
        ms = [r["latency"][f"{q}_ms"] for q in ("p50", "p90", "p99", "p999")]
        out.append(
            f"| {r['target']} | {r['round'] + 1} | "
            f"{r['ok']}/{r['measured_requests']} | "
            + " | ".join(f"{value:.2f}" for value in ms)
            + f" | {r['send_lag']['p99_ms']:.2f} | "
            + (
                f"{r['cpu_us_per_request']:,.0f} |"
                if "cpu_us_per_request" in r
                else "|"
            )
        )
    out.append("\n(b) wrk, per round:\n")
    out.append("| target | round | req/s | non-2xx | errors | p50 ms | p99 ms |")
    out.append("|---|---|---|---|---|---|---|")
    for r in wrk_rows:
        errors = (
            r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
        )
        out.append(
            f"| {r['target']} | {r['round'] + 1} | {r['rate']:,.0f} | {r['non2xx']} | "
            f"{errors} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} |"
        )
    out.append("\n(c) streams:\n")
    out.append(
        "| target | ok | lines | gap p50 ms | gap p99 ms | gap p99.9 ms | first line "
        "p50/p99 ms | open s | cores | node cores |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in streams.items():
        out.append(
            f"| {name} | {r['ok']}/{r['streams']} | {r['lines']:,} | "
            f"{r['gap_ms']['0.5']:.2f} | {r['gap_ms']['0.99']:.2f} | "
            f"{r['gap_ms']['0.999']:.2f} | {r['first_line_ms']['0.5']:.1f}/"
            f"{r['first_line_ms']['0.99']:.1f} | {r['open_s']:.2f} | "
            f"{r.get('cores', float('nan')):.2f} | {r['node_cores']:.2f} |"
        )
    if results.get("streams_error"):
        out.append(f"\n(c) could not run: {results['streams_error']}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()

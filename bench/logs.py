"""Benchmark: log lines ingested through POST /api/logs, fanned out to /ws/logs viewers.

    .venv/bin/python bench/logs.py                     # both modes, 3 rounds
    .venv/bin/python bench/logs.py --rounds 1 --seconds 10 --modes batch
    .venv/bin/python bench/logs.py --client sansio     # lighter viewers

Target (issue 4): 2,000 lines/s ingested in batches while 50 viewers are connected,
every viewer receiving every line, p99 delivery ≤ 250 ms.

Each round starts a fresh `manage.py serve` (SQLite in a fresh data dir, nothing
probed, the dashboard's own log capture on, as shipped). Viewers run in
`--viewer-processes` child processes of this script (asyncio + websockets, which
offers permessage-deflate as browsers do) and connect unfiltered, so they also see
the dashboard's own lines. The producer, in this process, POSTs `--batch` lines
`--rate / --batch` times a second on one keep-alive connection; every line carries
its send time, and a viewer's delivery latency is its receive time minus that (one
clock: the same machine). Per-line viewers parse every 10th line in full (the id
of each is read from the text's head: parsing 100,000 messages a second in the
harness would measure the harness); batch viewers (?batch=1) parse everything.

Clients: `--client websockets` (the default) reads with the library's asyncio
client, an `await recv()` under a timeout per message: 10-15 µs of CPU a message,
so in per-line mode (100,000 messages a second) the viewers alone need more than
one of the machine's 2 CPUs. `--client sansio` drives the same library's sans-I/O
protocol from the socket's data callbacks, about 5 µs a message, and leaves the
CPUs to the server whose delivery is measured. Both check every line the same way.

Modes: "line" = one WebSocket message per line (the default of /ws/logs);
"batch" = ?batch=1, lines that arrive together in one "log_batch" message.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path

import run
from paced import percentile

VIEWERS = 50
RATE = 2000  # lines per second
BATCH = 100  # lines per POST
SECONDS = 20.0
WARMUP = 3.0
TARGET_P99_MS = 250.0
log = run.log


# --- viewers (child processes) -----------------------------------------------------


class Tally:
    """What one viewer received: the bench's line ids, and latencies of a sample."""

    def __init__(self, batch: bool) -> None:
        self.batch = batch
        self.ids: list[int] = []
        self.latencies: list[float] = []

    def message(self, text: str, now: float) -> None:
        if self.batch:
            for line in json.loads(text)["lines"]:
                if line["app_id"] == "bench":
                    self.ids.append(line["id"])
                    if not line["extra"]["warmup"]:
                        self.latencies.append(now - line["extra"]["sent"])
            return
        if '"app_id": "bench"' not in text:
            return
        self.ids.append(int(text[7 : text.index(",", 7)]))
        if len(self.ids) % 10 == 0:
            extra = json.loads(text)["extra"]
            if not extra["warmup"]:
                self.latencies.append(now - extra["sent"])

    def result(self) -> dict:
        return {"ids": self.ids, "latencies": self.latencies}


async def _view(url: str, batch: bool, stop_at: float, results: list, index: int):
    """A viewer on the websockets library's asyncio client, as a script would be."""
    from websockets.asyncio.client import connect

    tally = Tally(batch)
    async with connect(url + ("?batch=1" if batch else ""), max_size=None) as ws:
        results[index] = {"connected": True}
        while time.time() < stop_at:
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            tally.message(text, time.time())
    results[index] = tally.result()


class SansIOViewer(asyncio.Protocol):
    """A viewer on websockets' sans-I/O protocol: frames handled as they arrive.

    The same WebSocket client code (handshake, framing, permessage-deflate offered,
    pings answered) without a task, a future and a timer per message. A message's
    receive time is when the bytes that completed it were read from the socket;
    every message is still decoded and tallied as the asyncio viewer does.
    """

    def __init__(self, url: str, batch: bool) -> None:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import (
            enable_client_permessage_deflate,
        )
        from websockets.uri import parse_uri

        self.protocol = ClientProtocol(
            parse_uri(url),
            extensions=enable_client_permessage_deflate(None),
            max_size=None,
        )
        self.tally = Tally(batch)
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.fragments: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.protocol.send_request(self.protocol.connect())
        self._write()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        now = time.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if event.status_code == 101 and not self.opened.done():
                    self.opened.set_result(True)
            elif isinstance(event, Frame):
                if event.opcode in (Opcode.TEXT, Opcode.CONT):
                    self.fragments.append(event.data)
                    if event.fin:
                        text = b"".join(self.fragments).decode()
                        self.fragments = []
                        self.tally.message(text, now)
        self._write()

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"not opened: {exc}"))
        if not self.closed.done():
            self.closed.set_result(True)

    def close(self) -> None:
        self.protocol.send_close()
        self._write()

    def _write(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.write_eof()


async def _view_sansio(url, batch: bool, stop_at: float, results: list, index: int):
    from urllib.parse import urlsplit

    address = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, viewer = await loop.create_connection(
        lambda: SansIOViewer(url + ("?batch=1" if batch else ""), batch),
        address.hostname,
        address.port,
    )
    await asyncio.wait_for(viewer.opened, 10)
    results[index] = {"connected": True}
    await asyncio.sleep(max(0.0, stop_at - time.time()))
    viewer.close()
    try:
        await asyncio.wait_for(viewer.closed, 5)
    except TimeoutError:
        viewer.transport.abort()
    results[index] = viewer.tally.result()


CLIENTS = {"websockets": _view, "sansio": _view_sansio}


def viewer_process(url, batch, count, stop_at, queue, client="websockets") -> None:
    view = CLIENTS[client]

    async def main():
        results: list = [None] * count
        await asyncio.gather(
            *(view(url, batch, stop_at, results, i) for i in range(count))
        )
        return results

    queue.put(asyncio.run(main()))


def proc_cpu(pid: int, thread: int | None = None) -> float:
    """Return the CPU seconds of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / run.CLOCK_TICKS


# --- producer ----------------------------------------------------------------------


def produce(port: int, rate: float, batch: int, seconds: float) -> dict:
    """POST rate lines/s in batches for seconds; return what was accepted.

    Lines of the first WARMUP seconds are delivered and counted, but marked so that
    viewers leave them out of the latencies.
    """
    connection = http.client.HTTPConnection(run.HOST, port, timeout=10)
    interval = batch / rate
    started = time.perf_counter()
    sent = accepted = refused = 0
    post_ms = []
    filler = "x" * 60
    while (now := time.perf_counter()) - started < seconds:
        due = started + sent * interval
        if now < due:
            time.sleep(due - now)
        stamp = time.time()
        warmup = now - started < WARMUP
        body = json.dumps(
            {
                "app_id": "bench",
                "records": [
                    {
                        "level": "INFO",
                        "logger": "bench.producer",
                        "message": f"request {sent}-{i} served {filler}",
                        "extra": {"sent": stamp, "warmup": warmup},
                    }
                    for i in range(batch)
                ],
            }
        )
        t0 = time.perf_counter()
        connection.request(
            "POST", "/api/logs", body, {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        post_ms.append((time.perf_counter() - t0) * 1000)
        if response.status == 200:
            accepted += answer["accepted"]
        else:
            refused += batch
        sent += 1
    elapsed = time.perf_counter() - started
    connection.close()
    return {
        "accepted": accepted,
        "refused": refused,
        "rate": accepted / elapsed,
        "post_p50_ms": percentile(sorted(post_ms), 0.50),
        "post_p99_ms": percentile(sorted(post_ms), 0.99),
    }


# --- a round ---------------------------------------------------------------------


def one_round(args, workspace: run.Workspace, mode: str) -> dict:
    env = {
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        "SOLLOL_PROBE_INTERVAL": "3600",
        "SOLLOL_LOG_RETENTION_COUNT": "1000000",
    }
    server = workspace.server("embedded", env)
    server.prepare()
    server.start()
    url = f"ws://{run.HOST}:{server.port}/ws/logs"
    total = WARMUP + args.seconds
    stop_at = time.time() + total + 15  # viewers keep reading to catch up
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    per = [args.viewers // args.viewer_processes] * args.viewer_processes
    per[0] += args.viewers - sum(per)
    children = [
        context.Process(
            target=viewer_process,
            args=(url, mode == "batch", n, stop_at, queue, args.client),
        )
        for n in per
    ]
    for child in children:
        child.start()
    time.sleep(3.0)  # connections open
    cpu_before = server.cpu_seconds()
    # The main thread runs the event loop: every WebSocket message is sent there.
    loop_before = proc_cpu(server.process.pid, server.process.pid)
    viewers_before = [proc_cpu(child.pid) for child in children]
    spy = None
    if args.profile:
        spy = subprocess.Popen(
            [
                str(run.REPO / ".venv" / "bin" / "py-spy"),
                "record",
                *f"--pid {server.process.pid} --duration {int(total)}".split(),
                *"--rate 200 --format raw --threads -o".split(),
                f"{args.profile}-{mode}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    produced = produce(server.port, args.rate, args.batch, total)
    if spy is not None:
        spy.wait(30)
    cpu = (server.cpu_seconds() - cpu_before) / total
    loop_cpu = (proc_cpu(server.process.pid, server.process.pid) - loop_before) / total
    viewer_cpu = [
        (proc_cpu(child.pid) - before) / total
        for child, before in zip(children, viewers_before, strict=True)
    ]
    results = [viewer for _ in children for viewer in queue.get(timeout=total + 60)]
    for child in children:
        child.join()
    server.stop()
    received = [len(v["ids"]) for v in results]
    complete = sum(1 for v in results if len(set(v["ids"])) == produced["accepted"])
    in_order = all(v["ids"] == sorted(set(v["ids"])) for v in results)
    latencies = sorted(value * 1000 for v in results for value in v["latencies"])
    row = {
        "mode": mode,
        "viewers": len(results),
        "accepted": produced["accepted"],
        "refused": produced["refused"],
        "rate": produced["rate"],
        "post_p99_ms": produced["post_p99_ms"],
        "complete_viewers": complete,
        "min_received": min(received),
        "in_order_no_duplicates": in_order,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else None,
        "samples": len(latencies),
        "server_cores": cpu,
        "event_loop_cores": loop_cpu,
        "viewer_cores": sum(viewer_cpu),
    }
    log(
        f"  {mode}: {row['rate']:.0f} lines/s accepted, {complete}/{len(results)} "
        f"viewers got all {row['accepted']}, p99 {row['p99_ms']:.1f} ms, "
        f"server {cpu:.2f} cores (event loop {loop_cpu:.2f}), viewers "
        f"{sum(viewer_cpu):.2f} cores, POST p99 {row['post_p99_ms']:.1f} ms"
    )
    return row


def render(rows: list[dict], args, info: dict, started: dt.datetime) -> str:
    command = " ".join(["bench/logs.py", *sys.argv[1:]]).strip()
    out = [
        f"\n## {started:%Y-%m-%d %H:%M} UTC: commit {info['commit']} "
        f"(+{info['uncommitted']} uncommitted files), logs fan-out\n",
        f"Written by `.venv/bin/python {command}`. Machine: {info['nproc']} CPUs, "
        f"Python {info['python']}, load {info['load']} at start. Fresh "
        f"`manage.py serve` per round (SQLite, in-memory channel layer); "
        f"{args.viewers} viewers ({args.client} client) in "
        f"{args.viewer_processes} processes; producer "
        f"{args.rate} lines/s in POSTs of {args.batch} for "
        f"{WARMUP + args.seconds:.0f} s (the first {WARMUP:.0f} s left out of the "
        "latencies).\n",
        "| mode | target | median p99 ms | all rounds p99 ms | p50 ms | viewers "
        "with every line | lines/s accepted | refused | server cores | viewer cores "
        "| met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in args.modes:
        mine = [r for r in rows if r["mode"] == mode]
        p99 = statistics.median(r["p99_ms"] for r in mine)
        met = p99 <= TARGET_P99_MS and all(
            r["complete_viewers"] == r["viewers"] and r["in_order_no_duplicates"]
            for r in mine
        )
        out.append(
            f"| {mode} | p99 ≤ {TARGET_P99_MS:.0f} ms, every line | {p99:.1f} | "
            + ", ".join(f"{r['p99_ms']:.1f}" for r in mine)
            + f" | {statistics.median(r['p50_ms'] for r in mine):.1f} | "
            + ", ".join(f"{r['complete_viewers']}/{r['viewers']}" for r in mine)
            + f" | {statistics.median(r['rate'] for r in mine):.0f} | "
            + f"{sum(r['refused'] for r in mine)} | "
            + f"{statistics.median(r['server_cores'] for r in mine):.2f} | "
            + f"{statistics.median(r['viewer_cores'] for r in mine):.2f} | "
            + ("yes" if met else "no")
            + " |"
        )
    out.append("")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--viewers", type=int, default=VIEWERS)
    parser.add_argument("--viewer-processes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--modes", nargs="+", default=["batch", "line"])
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="websockets",
        help="the viewers' WebSocket client: websockets' asyncio client (a task "
        "and a timer per message) or its sans-I/O protocol (frames handled as "
        "they arrive)",
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="py-spy the server to PREFIX-<mode>.txt"
    )
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    info = run.machine()
    workspace = run.Workspace(keep=False)
    rows = []
    try:
        for round_number in range(1, args.rounds + 1):
            for mode in args.modes:
                log(f"round {round_number}: {mode}")
                rows.append(one_round(args, workspace, mode))
    finally:
        workspace.close()
    report = render(rows, args, info, started)
    print(report)
    if not args.no_write:
        run.write_results(report, info)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())

"""Benchmark: can one simulated node stream 1,000 paced answers at once?

    .venv/bin/python bench/simulator_streams.py            # 1,000 x 200 tokens at 50/s
    .venv/bin/python bench/simulator_streams.py --streams 200 --tokens 50 --loop asyncio

A node (``simulator.ollama``, in a process of its own, uvloop by default) is set to
``token_rate`` tokens a second with room for every stream (``num_parallel``). A
client process opens the streams (``POST /api/generate``, ``num_predict`` tokens,
spread over the first half second) on raw asyncio connections and notes when each
NDJSON line arrives. It reports:

- the node's CPU (user + system seconds over the run, and per second of it);
- lateness: how long after its due time the node wrote a chunk (measured inside the
  node: ``loop.time()`` against the due time of the token it writes), and how far
  each chunk arrived from its ideal arrival (first chunk + k / token_rate) at the
  client, which adds the client's own lag;
- each stream's duration against the ideal (tokens - 1) / token_rate.

Only 127.0.0.0/8 is contacted. Nothing is written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _node(pipe: Any, options: dict[str, Any]) -> None:
    """Run one node until told to stop; report its CPU and the lateness it saw."""
    from simulator import work
    from simulator.ollama import SimulatedNode, new_event_loop

    _raise_fd_limit(options["streams"] * 2 + 256)
    late: list[float] = []
    tick = work.Generation._tick

    def measured(self: work.Generation) -> None:  # the due time of the token it writes
        late.append(self.loop.time() - (self.first + self.sent * self.interval))
        tick(self)

    work.Generation._tick = measured  # type: ignore[method-assign]

    async def main() -> None:
        node = SimulatedNode(options["host"], 0, models=["llama3.2:3b"])
        await node.start()
        node.load("llama3.2:3b", keep_alive=-1)
        node.set_generation(
            token_rate=options["rate"],
            num_parallel=options["streams"],
            max_queue=options["streams"],
        )
        pipe.send(node.port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pipe.recv)  # "start"
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        await loop.run_in_executor(None, pipe.recv)  # "stop"
        after = resource.getrusage(resource.RUSAGE_SELF)
        pipe.send(
            {
                "user": after.ru_utime - before.ru_utime,
                "sys": after.ru_stime - before.ru_stime,
                "wall": time.monotonic() - started,
                "late": late,
                "processed": node.processed["llama3.2:3b"],
                "dropped": len(node.dropped),
            }
        )
        await node.stop()

    loop = new_event_loop() if options["loop"] == "uvloop" else asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.close()


class _Stream(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future[list[float]]) -> None:
        self.request = request
        self.done = done
        self.arrivals: list[float] = []
        self.tail = b""

    def connection_made(self, transport: Any) -> None:
        transport.write(self.request)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        text = self.tail + data
        lines = text.count(b"}\n")  # an NDJSON line ends every chunk
        self.tail = text[-2:]
        self.arrivals.extend([now] * lines)
        if text.endswith(b"0\r\n\r\n") and b'"done":true' in text:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(self.arrivals)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.arrivals)


async def _clients(port: int, options: dict[str, Any]) -> list[list[float]]:
    host = options["host"]
    body = json.dumps(
        {
            "model": "llama3.2:3b",
            "prompt": "Count slowly.",
            "options": {"num_predict": options["tokens"]},
        }
    ).encode()
    request = (
        f"POST /api/generate HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    waits: list[asyncio.Future[list[float]]] = []
    spread = 0.5 / options["streams"]
    for _ in range(options["streams"]):
        done: asyncio.Future[list[float]] = loop.create_future()
        await loop.create_connection(lambda d=done: _Stream(request, d), host, port)
        waits.append(done)
        await asyncio.sleep(spread)
    return await asyncio.gather(*waits)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--host", default="127.0.0.77")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    options = vars(parser.parse_args())
    _raise_fd_limit(options["streams"] + 256)

    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_node, args=(theirs, options), daemon=True
    )
    child.start()
    port = ours.recv()
    ours.send("start")
    started = time.monotonic()
    import uvloop

    streams = uvloop.run(_clients(port, options))
    elapsed = time.monotonic() - started
    ours.send("stop")
    node = ours.recv()
    child.join(timeout=30)

    rate, tokens = options["rate"], options["tokens"]
    arrival_late = [
        at - (arrivals[0] + k / rate)
        for arrivals in streams
        for k, at in enumerate(arrivals[:tokens])
    ]
    durations = [arrivals[tokens - 1] - arrivals[0] for arrivals in streams if arrivals]
    complete = sum(len(arrivals) == tokens + 1 for arrivals in streams)
    late = node["late"]
    print(
        f"{options['streams']} streams x {tokens} tokens at {rate:g}/s "
        f"({options['loop']}), {elapsed:.1f} s wall; {complete} complete, "
        f"node processed {node['processed']}, dropped {node['dropped']}"
    )
    cpu = node["user"] + node["sys"]
    print(
        f"node CPU {cpu:.2f} s ({node['user']:.2f} user, {node['sys']:.2f} system) "
        f"over {node['wall']:.1f} s = {cpu / node['wall']:.2f} cores; "
        f"{len(late)} timer ticks for {len(arrival_late)} chunks"
    )
    print(
        "node-side lateness ms: median "
        f"{statistics.median(late) * 1000:.1f}, p95 {_pct(late, 0.95) * 1000:.1f}, "
        f"p99 {_pct(late, 0.99) * 1000:.1f}, max {max(late) * 1000:.1f}"
    )
    print(
        "client-side lateness ms (vs first chunk + k/rate): median "
        f"{statistics.median(arrival_late) * 1000:.1f}, "
        f"p95 {_pct(arrival_late, 0.95) * 1000:.1f}, "
        f"p99 {_pct(arrival_late, 0.99) * 1000:.1f}, "
        f"max {max(arrival_late) * 1000:.1f}"
    )
    ideal = (tokens - 1) / rate
    print(
        f"stream duration s (ideal {ideal:.2f}): median "
        f"{statistics.median(durations):.2f}, max {max(durations):.2f}"
    )


if __name__ == "__main__":
    main()

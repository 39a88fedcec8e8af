"""Paced open-loop HTTP/1.1 load, measured from each request's scheduled send time.

wrk runs a closed loop: a slow response delays the next request, so a stalled server
is asked less and its stall hides (coordinated omission). Here request i is due at
start + i / rate whatever happened before; a free keep-alive connection sends it,
and its latency runs from when it was due, so queueing behind a stall counts.
Debian has no wrk2, hence this file.

One thread, blocking sockets, select() for readiness: select() takes its timeout in
microseconds (epoll and asyncio round up to whole milliseconds), which keeps the
generator's own lateness well under a millisecond. "send lag" in the results is that
lateness plus any wait for a free connection; check it against the bare app.

    .venv/bin/python bench/paced.py --port 8080 --rate 1000 --duration 15
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import random
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

HEARTBEAT_PATH = "/api/applications/heartbeat"


def heartbeat_body(index: int, prefix: str = "bench-") -> bytes:
    """Return the heartbeat (or register) body of app index; same as heartbeat.lua."""
    return (
        f'{{"app_id":"{prefix}{index}","name":"Bench App {index}",'
        f'"router_type":"HybridRouter","version":"1.4.2",'
        f'"metadata":{{"env":"bench","host":"worker-{index % 1000:03d}","gpus":2}}}}'
    ).encode()


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """Return the bytes of a keep-alive JSON POST, headers as wrk sends them."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def check_loopback(host: str) -> None:
    """Refuse any target but loopback: benchmarks talk to 127.0.0.0/8 only."""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"{host} is not a loopback address")


class ProtocolError(Exception):
    """The server answered something this small client does not read."""


class Connection:
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.due = 0.0
        self.sent = 0.0
        self.connect()

    def connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=5)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.closing = False

    def reconnect(self) -> None:
        self.sock.close()
        self.connect()

    def send(self, request: bytes, due: float) -> None:
        self.due = due
        self.sock.sendall(request)
        self.sent = time.perf_counter()

    def read(self) -> int | None:
        """Take what arrived; return the status once the whole response is in."""
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data
        return self._complete_response()

    def _complete_response(self) -> int | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise ProtocolError("chunked responses are not supported")
            elif name == "connection" and value == "close":
                self.closing = True
        if length is None:
            raise ProtocolError("response without Content-Length")
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        del self.buffer[:total]
        return status


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of sorted values (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _summary_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": percentile(ordered, 0.50) * 1e3,
        "p90_ms": percentile(ordered, 0.90) * 1e3,
        "p99_ms": percentile(ordered, 0.99) * 1e3,
        "p999_ms": percentile(ordered, 0.999) * 1e3,
        "max_ms": (ordered[-1] if ordered else 0.0) * 1e3,
    }


def paced(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    warmup: float = 2.0,
    connections: int = 20,
    drain_timeout: float = 5.0,
    seed: int = 1,
) -> dict[str, Any]:
    """Offer rate requests/s for warmup + duration s; report on the last duration s.

    Each request is one of requests, picked at random. Latency runs from the
    scheduled send time to the end of the response.
    """
    check_loopback(host)
    chooser = random.Random(seed)
    pool = [Connection(host, port) for _ in range(connections)]
    idle = deque(pool)
    busy: dict[socket.socket, Connection] = {}
    backlog: deque[float] = deque()
    interval = 1.0 / rate
    total = round(rate * (warmup + duration))
    start = time.perf_counter() + 0.05
    measure_from = start + warmup
    measure_until = measure_from + duration
    latencies: list[float] = []
    service: list[float] = []
    send_lags: list[float] = []
    completions_in_window = 0
    statuses: dict[int, int] = {}
    socket_errors = 0
    scheduled = 0
    # A collection pause here would be charged to the server; the generator makes
    # no reference cycles, so collection can wait until the run is over.
    gc.collect()
    gc.disable()
    cpu_before = time.process_time()
    try:
        while True:
            now = time.perf_counter()
            while scheduled < total and start + scheduled * interval <= now:
                backlog.append(start + scheduled * interval)
                scheduled += 1
            while backlog and idle:
                connection = idle.popleft()
                due = backlog.popleft()
                try:
                    connection.send(chooser.choice(requests), due)
                except OSError:
                    socket_errors += due >= measure_from
                    connection.reconnect()
                    idle.append(connection)
                    continue
                if due >= measure_from:
                    send_lags.append(connection.sent - due)
                busy[connection.sock] = connection
            if scheduled >= total and not backlog and not busy:
                break
            if scheduled < total:
                timeout = max(0.0, start + scheduled * interval - time.perf_counter())
            else:
                timeout = measure_until + drain_timeout - time.perf_counter()
                if timeout <= 0:
                    break
            readable, _, _ = select.select(list(busy), [], [], timeout)
            for sock in readable:
                connection = busy[sock]
                try:
                    status = connection.read()
                except (OSError, ProtocolError):
                    socket_errors += connection.due >= measure_from
                    del busy[sock]
                    connection.reconnect()
                    idle.append(connection)
                    continue
                if status is None:
                    continue
                finished = time.perf_counter()
                del busy[sock]
                if connection.closing:
                    connection.reconnect()
                idle.append(connection)
                if connection.due < measure_from:
                    continue
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(finished - connection.due)
                service.append(finished - connection.sent)
                completions_in_window += finished <= measure_until
    finally:
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - start
        gc.enable()
        for connection in pool:
            connection.sock.close()
    timeouts = len([c for c in busy.values() if c.due >= measure_from]) + len(
        [due for due in backlog if due >= measure_from]
    )
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    return {
        "offered_rate": rate,
        "duration_s": duration,
        "connections": connections,
        "measured_requests": round(rate * duration),
        "completed": len(latencies),
        "achieved_rate": completions_in_window / duration,
        "ok": ok,
        "non2xx": len(latencies) - ok,
        "socket_errors": socket_errors,
        "timeouts": timeouts,
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "latency": _summary_ms(latencies),
        "service_time": _summary_ms(service),
        "send_lag": _summary_ms(send_lags),
        "generator_cpu": cpu / wall if wall > 0 else 0.0,
    }


def closed(
    host: str, port: int, requests: Sequence[bytes], *, connections: int = 20
) -> dict[str, Any]:
    """Send every request once, as fast as connections allow; return the statuses
    and each request's latency (sent to answered, seconds, sorted)."""
    check_loopback(host)
    pending = deque(requests)
    pool = [Connection(host, port) for _ in range(min(connections, len(pending)))]
    idle = deque(pool)
    busy: dict[socket.socket, Connection] = {}
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        while pending or busy:
            while pending and idle:
                connection = idle.popleft()
                connection.send(pending.popleft(), time.perf_counter())
                busy[connection.sock] = connection
            readable, _, _ = select.select(list(busy), [], [], 30.0)
            if not readable:
                raise TimeoutError(f"no response in 30 s, {len(busy)} in flight")
            for sock in readable:
                connection = busy[sock]
                status = connection.read()
                if status is None:
                    continue
                latencies.append(time.perf_counter() - connection.sent)
                statuses[status] = statuses.get(status, 0) + 1
                del busy[sock]
                if connection.closing:
                    connection.reconnect()
                idle.append(connection)
    finally:
        for connection in pool:
            connection.sock.close()
    elapsed = time.perf_counter() - started
    return {
        "requests": len(requests),
        "elapsed_s": elapsed,
        "rate": len(requests) / elapsed if elapsed else 0.0,
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "latencies": sorted(latencies),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default=HEARTBEAT_PATH)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s")
    parser.add_argument("--duration", type=float, default=15.0, help="measured s")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured s first")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--apps", type=int, default=200, help="app_ids to spread over")
    parser.add_argument("--prefix", default="bench-", help="app_id prefix")
    args = parser.parse_args(argv)
    requests = [
        post_request(args.host, args.port, args.path, heartbeat_body(i, args.prefix))
        for i in range(args.apps)
    ]
    result = paced(
        args.host,
        args.port,
        requests,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

"""Open N streamed /api/chat requests at once and time every line that arrives.

A client of its own process (bench/gateway.py runs it), on uvloop with a bare
asyncio Protocol: reading a chunk costs a few microseconds, so at 50,000 lines a
second the client is not what is measured. For each stream it keeps the arrival
time of every NDJSON line; the gaps between consecutive lines of a stream, over
all streams, are what a reader of the stream sees.

    .venv/bin/python bench/streams.py --port 11434 --streams 1000 --tokens 200
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time

import uvloop


class Stream(asyncio.Protocol):
    """One request; its reply's lines, timed as they arrive."""

    def __init__(self, request: bytes, done: asyncio.Future) -> None:
        self.request = request
        self.done = done
        self.times: list[float] = []  # arrival of each line
        self.status = 0
        self.head = b""
        self.in_body = False
        self.tail = b""
        self.finished = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.started = time.perf_counter()
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head.split(b" ", 2)[1])
            data = self.head[end + 4 :]
            self.in_body = True
        # Chunk framing aside, each NDJSON line ends with "}\n".
        lines = data.count(b"}\n")
        self.times.extend([now] * lines)
        self.tail = (self.tail + data)[-64:]
        if b'"done":true' in self.tail or self.tail.endswith(b"0\r\n\r\n"):
            if not self.finished:
                self.finished = True
                self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(self)


def request(host: str, port: int, path: str, tokens: int) -> bytes:
    body = json.dumps(
        {
            "model": "llama3.2:3b",
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "options": {"num_predict": tokens},
        }
    ).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def run(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    payload = request(args.host, args.port, args.path, args.tokens)
    streams: list[Stream] = []
    futures = []
    started = time.perf_counter()
    for index in range(args.streams):
        done = loop.create_future()
        stream = Stream(payload, done)
        await loop.create_connection(lambda s=stream: s, args.host, args.port)
        streams.append(stream)
        futures.append(done)
        # Spread the opening over ramp seconds, as clients arrive.
        lag = started + args.ramp * (index + 1) / args.streams - time.perf_counter()
        if lag > 0:
            await asyncio.sleep(lag)
    opened = time.perf_counter()
    if args.ready_file:
        with open(args.ready_file, "w") as ready:
            ready.write(f"{opened}\n")
    await asyncio.wait_for(asyncio.gather(*futures), args.timeout)
    gaps = sorted(
        later - earlier
        for stream in streams
        for earlier, later in zip(stream.times, stream.times[1:], strict=False)
    )
    firsts = sorted(s.times[0] - s.started for s in streams if s.times)

    def pick(values, q):
        return (
            values[min(len(values) - 1, int(q * len(values)))] * 1e3 if values else None
        )

    return {
        "streams": args.streams,
        "tokens": args.tokens,
        "ok": sum(1 for s in streams if s.status == 200),
        "lines": sum(len(s.times) for s in streams),
        "gap_ms": {q: pick(gaps, float(q)) for q in ("0.5", "0.9", "0.99", "0.999")},
        "first_line_ms": {q: pick(firsts, float(q)) for q in ("0.5", "0.99")},
        "open_s": opened - started,
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/chat")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds to open all")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--ready-file", help="written once every stream is open")
    args = parser.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        raise SystemExit(f"{args.host} is not a loopback address")
    result = uvloop.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

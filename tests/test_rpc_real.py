"""probe_backend against the real llama.cpp ggml-rpc-server binary.

scripts/build_rpc_server.sh builds it once into the cache; SOLLOL_RPC_SERVER points
at another build.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from conftest import require
from network.choices import Source
from network.cycle import run_cycle
from network.models import RpcBackend
from network.rpc import probe_backend
from network.services import lifecycle
from network.tests.held import assert_busy_while_held_then_online_then_offline

pytestmark = pytest.mark.live

HOST = "127.0.0.1"  # the server warns about, and we never want, anything else
CACHE = Path(os.environ.get("SOLLOL_RPC_SERVER_CACHE", Path.home() / ".cache/sollol"))
BINARY = Path(os.environ.get("SOLLOL_RPC_SERVER", CACHE / "ggml-rpc-server"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    # A bare connect, no bytes: the server reads EOF and goes back to accept().
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        return False
    return True


class RealServer:
    """One ggml-rpc-server process on loopback, stopped by its PID."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [str(BINARY), "-H", HOST, "-p", str(self.port), "-t", "1"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"ggml-rpc-server did not start: see {log}")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def real_server(tmp_path) -> Iterator[RealServer]:
    require(
        BINARY.is_file() and os.access(BINARY, os.X_OK),
        f"no ggml-rpc-server at {BINARY}: run scripts/build_rpc_server.sh",
    )
    server = RealServer(tmp_path / "ggml-rpc-server.log")
    yield server
    server.stop()


def _hello(protocol: str) -> bytes:
    """Return the first request a client of this server's generation sends."""
    if protocol == "legacy":
        return struct.pack("<BQ", 1, 0)  # GET_ALIGNMENT: any request will do
    major = int(protocol.split(".")[0])
    payload = bytes(24) if major >= 4 else b""
    return struct.pack("<BQ", 14, len(payload)) + payload


def _read_reply(sock: socket.socket) -> bytes:
    header = b""
    while len(header) < 8:
        chunk = sock.recv(8 - len(header))
        assert chunk, "the server closed the connection"
        header += chunk
    (size,) = struct.unpack("<Q", header)
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        assert chunk, "the server closed the connection"
        body += chunk
    return body


async def test_it_reads_the_real_servers_version_and_devices(real_server):
    probe = await probe_backend(HOST, real_server.port, timeout=5)

    assert probe.status == "online", probe.error
    assert re.fullmatch(r"\d+\.\d+\.\d+", probe.protocol or ""), probe.protocol
    assert len(probe.devices) >= 1
    for index, device in enumerate(probe.devices):
        assert device.index == index
        assert device.total > 0
        assert 0 <= device.free <= device.total
    assert probe.latency_ms is not None

    real_server.stop()

    gone = await probe_backend(HOST, real_server.port, timeout=5)
    assert gone.status == "offline"
    assert (
        await probe_backend(HOST, real_server.port, timeout=5, deep=False)
    ).status == "offline"


async def test_it_leaves_the_real_server_alive_after_a_busy_probe(real_server):
    protocol = (await probe_backend(HOST, real_server.port, timeout=5)).protocol
    assert protocol is not None
    holder = socket.create_connection((HOST, real_server.port), timeout=5)
    try:
        holder.sendall(_hello(protocol))
        _read_reply(holder)  # the server is ours now; the next client waits

        started = time.monotonic()
        busy = await probe_backend(HOST, real_server.port, timeout=0.5)
        elapsed = time.monotonic() - started
        alive_while_held = await probe_backend(
            HOST, real_server.port, timeout=1, deep=False
        )
    finally:
        holder.close()  # nothing unanswered on it: a normal close is safe

    assert busy.status == "busy"
    assert elapsed < 2
    assert alive_while_held.status == "busy"  # the server left it in its queue
    # The abandoned HELLO is read and answered now; had the probe closed with a
    # FIN rather than an RST, that answer would kill the server with SIGPIPE.
    await asyncio.sleep(0.3)
    assert real_server.alive, "ggml-rpc-server died after the busy probe"
    again = await probe_backend(HOST, real_server.port, timeout=5)
    assert again.status == "online"
    assert again.protocol == protocol


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_PROBE_TIMEOUT=0.5, SOLLOL_RPC_SESSION_INTERVAL=12)
def test_it_shows_the_real_server_busy_for_as_long_as_a_client_holds_it(
    real_server,
):
    started = timezone.now()
    lifecycle.ensure_backends(
        [f"{HOST}:{real_server.port}"], source=Source.CONFIG, now=started
    )
    run_cycle(now=started)
    backend = RpcBackend.objects.get()
    assert backend.status == "online", backend.last_error
    holder = socket.create_connection((HOST, real_server.port), timeout=5)
    seen = []
    try:
        holder.sendall(_hello(backend.protocol))
        _read_reply(holder)
        # Every 5 s, a session every 12 s: past the two connections its queue
        # holds, connects time out, as they do for a dead host.
        for cycle in range(1, 7):
            run_cycle(now=started + dt.timedelta(seconds=5 * cycle))
            seen.append(RpcBackend.objects.get().status)
    finally:
        holder.close()
    # The server takes the connections still queued in microseconds; a connect
    # refused a place in the queue would be retried only after 1 s, past the
    # probe's timeout, so leave it a moment, as the probe interval would.
    time.sleep(0.2)
    run_cycle(now=started + dt.timedelta(seconds=35))
    seen.append(RpcBackend.objects.get().status)
    real_server.stop()
    run_cycle(now=started + dt.timedelta(seconds=40))
    seen.append(RpcBackend.objects.get().status)

    assert_busy_while_held_then_online_then_offline(seen)

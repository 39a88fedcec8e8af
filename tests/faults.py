"""Outside services that a test can take away and give back: a TCP proxy, a Redis.

The machine's own PostgreSQL and Redis must keep running for everyone else, so a
test that needs "the database is gone" puts this proxy between the dashboard and
PostgreSQL and cuts it, and one that needs "Redis is gone" starts a Redis of its
own on another port and stops that one, by its PID. Tests that only use the
machine's Redis take keys of their own there (`redis_prefix`) and delete them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import redis

from conftest import require
from tests.liveserver import free_port

# The machine's Redis, shared with other test runs (CI sets REDIS_URL).
MACHINE_REDIS = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def redis_prefix(name: str = "test") -> Iterator[str]:
    """Yield a key prefix of the caller's own on the machine's Redis; empty it after.

    Skips (fails in CI) when that Redis does not answer.
    """
    address = urlsplit(MACHINE_REDIS)
    try:
        socket.create_connection((address.hostname, address.port or 6379), 1).close()
    except OSError:
        require(False, f"no Redis at {MACHINE_REDIS}")
    prefix = f"{name}{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(MACHINE_REDIS)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


class TcpProxy:
    """Forward 127.0.0.1:port to a target; `down()` cuts every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._up = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        self.up()

    def up(self) -> None:
        self._up.set()

    def down(self) -> None:
        """Refuse new connections and reset the open ones, like a crashed server."""
        self._up.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closed = True
        self.down()
        self._listener.close()
        self._thread.join(2)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass


class PrivateRedis:
    """A redis-server of this test's own on a free loopback port, nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                *("--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=(self.workdir / "redis.log").open("a"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

"""Run the dashboard as a real server process for live tests.

Each LiveServer gets its own database: a fresh SQLite file, or, when the suite runs
against PostgreSQL (DATABASE_URL), a database it creates and later drops itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dj_database_url
import requests

REPO = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, what: str = "the condition"
) -> Any:
    """Poll condition until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class NodeProcess:
    """One simulated Ollama node in a process of its own, on a fixed address, so a
    test can kill it by its PID as an operator's machine dies."""

    def __init__(self, host: str, port: int, tmp: Path) -> None:
        self.host, self.port, self.tmp = host, port, tmp
        self.address = f"{host}:{port}"
        self.url = f"http://{self.address}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with (self.tmp / f"node-{self.address}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "simulate_fleet", "--nodes", "1",
                 "--base", self.host, "--port", str(self.port), "--no-control",
                 "--loop", "asyncio"],
                cwd=REPO,
                env={**os.environ, "SOLLOL_DATA_DIR": str(self.tmp)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

        def answers() -> bool:
            try:
                return requests.get(self.url + "/api/version", timeout=1).ok
            except requests.RequestException:
                return False

        try:
            wait_for(answers, timeout=20, what=f"the simulated node at {self.address}")
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL, by the PID this test started."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class LiveDatabase:
    """A database made for one live server and removed after it."""

    def __init__(self, tmp_path: Path) -> None:
        self.admin_url = os.environ.get("DATABASE_URL", "")
        if self.admin_url.startswith("postgres"):
            import psycopg

            self.name = f"sollol_live_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            parsed = dj_database_url.parse(self.admin_url)
            user = parsed["USER"] or "postgres"
            address = f"{parsed['HOST'] or '127.0.0.1'}:{parsed['PORT'] or 5432}"
            self.url = f"postgres://{user}@{address}/{self.name}"
        else:
            self.name = None
            self.url = f"sqlite:///{tmp_path / 'live.sqlite3'}"

    def _admin_dsn(self) -> str:
        parsed = dj_database_url.parse(self.admin_url)
        return (
            f"host={parsed['HOST'] or '127.0.0.1'} port={parsed['PORT'] or 5432} "
            f"user={parsed['USER'] or 'postgres'} dbname=postgres"
        )

    def drop(self) -> None:
        if self.name is None:
            return
        import psycopg

        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class LiveServer:
    """`manage.py serve` in a child process, restartable on the same port and data.

    kind "daphne" serves the dashboard with daphne, "gateway" only the gateway
    (sollol_site.asgi:gateway, with daphne), "lean-gateway" only the gateway with
    `manage.py gateway`; `database` shares another server's database.
    """

    def __init__(
        self,
        tmp_path: Path,
        kind: str = "serve",
        database: LiveDatabase | None = None,
        **env: str,
    ) -> None:
        self.tmp_path = tmp_path
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.owns_database = database is None
        self.database = database or LiveDatabase(tmp_path)
        self.env = {
            **os.environ,
            "SOLLOL_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": self.database.url,
            "SOLLOL_CHANNEL_PREFIX": f"live{uuid.uuid4().hex[:8]}",
            "PYTHONUNBUFFERED": "1",
            # A real server ships its own log lines to /ws/logs (the suite's own
            # process does not: see conftest.py).
            "SOLLOL_CAPTURE_LOGS": "true",
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log_path = tmp_path / "server.log"

    def start(self, timeout: float = 20.0) -> float:
        """Start the server; return the seconds until it first answered 200."""
        if self.kind in ("daphne", "gateway", "lean-gateway"):
            # daphne serves; migrating is a deployment step of its own.
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
                cwd=REPO,
                env=self.env,
                check=True,
            )
            app = "gateway" if self.kind == "gateway" else "application"
            # As deploy/ runs it: the client's address from a proxy's header is
            # core.proxies' to read (SOLLOL_TRUSTED_PROXIES), not daphne's.
            command = [
                *(sys.executable, "-m", "daphne", "-b", "127.0.0.1"),
                *("-p", str(self.port), f"sollol_site.asgi:{app}"),
            ]
            if self.kind == "lean-gateway":
                command = [sys.executable, "manage.py", "gateway"]
                command += ["--host", "127.0.0.1", "--port", str(self.port)]
        else:
            command = [sys.executable, "manage.py", "serve", "--port", str(self.port)]
        started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env,
            stdout=self.log_path.open("a"),
            stderr=subprocess.STDOUT,
        )
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if requests.get(self.url + "/", timeout=0.5).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stop the server process we started (by its PID); return its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        if self.owns_database:
            self.database.drop()

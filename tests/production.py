"""The production topology's parts for live tests: the machine's PostgreSQL and
Redis (tests/conftest.py's `database` makes a database of the test's own), and
Celery workers and beat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.liveserver import REPO

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS = ("127.0.0.1", 6379)


def reachable(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Celery:
    """`celery -A sollol_site <role>` in a child process, stopped by its PID."""

    def __init__(
        self,
        role: str,
        env: dict[str, str],
        tmp_path: Path,
        name: str = "",
        concurrency: int = 2,
    ) -> None:
        self.log_path = tmp_path / f"celery-{name or role}.log"
        extra = (
            ["--concurrency", str(concurrency), "--without-gossip", "--without-mingle"]
            + ["-l", "info"]
            if role == "worker"
            else ["--schedule", str(tmp_path / "beat-schedule")]
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sollol_site", role, *extra],
            cwd=REPO,
            env=env,
            stdout=self.log_path.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pool processes go with it
        )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acknowledgement."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

"""What a server process that imports the application does at once: keep Django
out of the collector, and say who may use the gateway.

Under daphne (which has no start-up hook of ours), a full collection walked every
object of Django on the serving thread, 80-100 ms every few seconds: the paced p99
was 93-103 ms against 22-24 ms once they were frozen (bench/RESULTS.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import gc
import sollol_site.asgi
frozen = gc.get_freeze_count()
tracked = len(gc.get_objects())
print(frozen, tracked)
"""


def in_a_fresh_server_process(tmp_path, code: str) -> subprocess.CompletedProcess:
    """Run code in a new interpreter with embedded defaults, as a server starts."""
    env = {
        **os.environ,
        "SOLLOL_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "sollol_site.settings",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "SOLLOL_GATEWAY_TOKEN"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_importing_the_application_freezes_what_it_built(tmp_path):
    done = in_a_fresh_server_process(tmp_path, PROBE)
    frozen, tracked = map(int, done.stdout.split()[-2:])
    # Everything the import built is frozen; the collector sees next to nothing.
    assert frozen > 50_000, done.stdout
    assert tracked < frozen / 100, done.stdout


def test_a_server_importing_the_application_says_who_may_use_the_gateway(tmp_path):
    """daphne runs no start-up hook of ours: the gateway's access policy is said
    as the application is built, not at the gateway's first request."""
    done = in_a_fresh_server_process(tmp_path, "import sollol_site.asgi")
    assert "gateway: answers loopback clients only" in done.stderr, done.stderr

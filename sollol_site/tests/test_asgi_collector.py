"""A server process that imports the application keeps Django out of the collector.

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


def test_importing_the_application_freezes_what_it_built(tmp_path):
    env = {
        **os.environ,
        "SOLLOL_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "sollol_site.settings",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    frozen, tracked = map(int, done.stdout.split()[-2:])
    # Everything the import built is frozen; the collector sees next to nothing.
    assert frozen > 50_000, done.stdout
    assert tracked < frozen / 100, done.stdout

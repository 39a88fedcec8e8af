"""Announcing from a thread that outlives the main thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The main thread returns at once; a non-daemon thread (as a log writer flushing a
# cluster's last records is) announces while the interpreter shuts down.
PROGRAM = textwrap.dedent(
    """
    import logging, threading, time
    import django
    django.setup()
    from core import realtime

    logging.basicConfig(level=logging.INFO)

    def late():
        time.sleep(0.5)
        realtime.announce("logs", 1)
        print("announced", flush=True)

    threading.Thread(target=late).start()
    """
)


def test_an_announcement_while_the_process_exits_is_skipped_without_a_traceback():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "sollol_site.settings"}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "announced" in done.stdout
    assert "Traceback" not in done.stderr
    assert "could not announce" not in done.stderr

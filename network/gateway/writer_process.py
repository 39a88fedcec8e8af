"""The gateway's writer process: request records, rollups, spans and events, written
away from the serving loop.

A gateway serves from one event loop; a writer thread beside it (what the lean
lane uses) takes the interpreter lock for each batch it prepares, and every
request waiting on the loop waits for it: at 500 requests/s that was most of the
gateway's added latency. So each gateway process starts one child,
`python -m network.gateway.writer_process`, and sends it the rows of finished
requests (records.Row, pickled, length-prefixed) on its stdin. The child writes
them with records.write_batches; what it announces (events, samples) comes back
on its stdout in the same framing and the parent sends it on to its own channel
layer, so the page hears of gateway work in embedded mode too (the in-memory
layer lives in the parent).

When the child falls behind, the pipe and then the parent's buffer fill; past
MAX_BUFFERED_BYTES new batches are dropped and counted. A child that dies is
started again (after RESTART_DELAY, doubling to MAX_RESTART_DELAY); what was
sent to it and not yet written is lost with it, and said so in the log.
Closing its stdin stops it after it wrote everything it had been sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import struct
import sys
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:  # the child imports models only after django.setup()
    from network.gateway.records import Batch

logger = logging.getLogger(__name__)

HEADER = struct.Struct("!I")
MAX_BUFFERED_BYTES = 32 * 1024 * 1024
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STOP_TIMEOUT = 15.0
MAX_BATCHES = 64  # written in one go, at most


def frame(item: Any) -> bytes:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


class ProcessSink:
    """The parent's side: start the child, send it batches, relay what it says."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.dropped = 0
        self._spawning: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._stopping = False
        self._delay = RESTART_DELAY
        self._warned_at = 0.0

    def start(self) -> None:
        self._stopping = False
        if self._spawning is None:
            self._spawning = asyncio.create_task(
                self._spawn(0.0), name="gateway-writer-spawn"
            )

    async def _spawn(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._stopping:
            return
        env = {**os.environ}
        env.setdefault("DJANGO_SETTINGS_MODULE", "sollol_site.settings")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "network.gateway.writer_process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=settings.BASE_DIR,
                env=env,
            )
        except OSError as exc:
            logger.error("gateway: could not start its writer process: %s", exc)
            self._spawning = asyncio.create_task(self._spawn(self._next_delay()))
            return
        self.process = process
        self._reader = asyncio.create_task(
            self._read_back(process), name="gateway-writer-read"
        )
        logger.info("gateway: writer process %d started", process.pid)

    def _next_delay(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, MAX_RESTART_DELAY)
        return delay

    async def send(self, batch: Batch) -> int:
        rows = len(batch[0])
        process = self.process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return self._drop(rows, "the writer process is not running")
        if process.stdin.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            return self._drop(rows, "the writer process is behind")
        process.stdin.write(frame(batch))
        return 0

    def _drop(self, rows: int, why: str) -> int:
        self.dropped += rows
        now = time.monotonic()
        if rows and now - self._warned_at > 10:
            self._warned_at = now
            logger.warning(
                "gateway: request records dropped (%s); %d so far", why, self.dropped
            )
        return rows

    async def _read_back(self, process: asyncio.subprocess.Process) -> None:
        """Send on what the child announces; when it ends, start it again."""
        from core import realtime

        assert process.stdout is not None
        try:
            while True:
                head = await process.stdout.readexactly(HEADER.size)
                (size,) = HEADER.unpack(head)
                group, message = pickle.loads(await process.stdout.readexactly(size))
                realtime.send_forwarded(group, message)
                self._delay = RESTART_DELAY  # it works: a later death starts afresh
        except asyncio.IncompleteReadError:
            pass  # it ended
        code = await process.wait()
        if self.process is process:
            self.process = None
        if not self._stopping:
            logger.error(
                "gateway: writer process %d ended (exit %s); starting another",
                process.pid,
                code,
            )
            self._spawning = asyncio.create_task(self._spawn(self._next_delay()))

    async def stop(self) -> None:
        """Let the child write what it was sent, then end it."""
        self._stopping = True
        if self._spawning is not None and not self._spawning.done():
            self._spawning.cancel()
            await asyncio.gather(self._spawning, return_exceptions=True)
        self._spawning = None
        process = self.process
        if process is not None and process.stdin is not None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                logger.error(
                    "gateway: writer process %d did not finish in %gs; killed",
                    process.pid,
                    STOP_TIMEOUT,
                )
                process.kill()
                await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        self.process = None


class Frames:
    """Length-prefixed pickles from a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def read(self, limit: int = MAX_BATCHES) -> list:
        """Return the whole frames that have come, waiting for one; [] at the end."""
        items: list = []
        while True:
            while len(items) < limit and len(self.buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(self.buffer)
                end = HEADER.size + size
                if len(self.buffer) < end:
                    break
                items.append(pickle.loads(memoryview(self.buffer)[HEADER.size : end]))
                del self.buffer[:end]
            if items:
                return items
            data = os.read(self.fd, 1 << 20)
            if not data:
                return []
            self.buffer += data


def main() -> None:
    """The child: write the batches that come on stdin until it closes."""
    # The frames back go to a copy of stdout; anything printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    # Ctrl-C in serve's terminal reaches the whole process group: the parent
    # stops this one by closing its stdin, once everything was sent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sollol_site.settings")
    import django

    django.setup()
    from django.db import connection

    from core import realtime
    from core.lean.writer import flush_items
    from network.gateway.records import write_batches

    realtime.forward_to(lambda group, message: out.write(frame((group, message))))
    frames = Frames(sys.stdin.fileno())
    try:
        while batches := frames.read():
            outcomes = flush_items("gateway", write_batches, batches)
            lost = sum(
                len(rows)
                for (rows, _), (ok, _) in zip(batches, outcomes, strict=True)
                if not ok
            )
            if lost:
                logger.warning("gateway writer: %d request records not written", lost)
    except BrokenPipeError:
        pass  # the parent is gone
    finally:
        connection.close()


if __name__ == "__main__":
    main()

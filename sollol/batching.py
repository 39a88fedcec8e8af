"""Send items to one dashboard endpoint in batches, from a daemon thread.

Request records, log lines and spans are produced on the host application's hot
path. `put()` only appends to a bounded queue and returns at once; the thread sends
what has gathered every `interval` seconds (sooner once `max_batch` items wait).
When the dashboard is away the queue keeps the newest `max_queue` items and counts
the ones it had to drop: the app never blocks and never grows without bound.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

logger = logging.getLogger(__name__)

# Threads that send to the dashboard. A logging handler shipping records to the
# dashboard must ignore what these threads log, or every failed send would log a
# line that would be sent, fail, and log again.
_sender_threads: set[int] = set()


def in_sender_thread() -> bool:
    """Return whether the caller runs in a thread that talks to the dashboard."""
    return threading.get_ident() in _sender_threads


@contextlib.contextmanager
def sender_thread() -> Iterator[None]:
    """Mark the calling thread as one that talks to the dashboard while inside."""
    _sender_threads.add(threading.get_ident())
    try:
        yield
    finally:
        _sender_threads.discard(threading.get_ident())


# The longest the dashboard may ask a client to wait (Retry-After), in seconds:
# beyond it the client's own backoff decides.
MAX_ASKED_WAIT = 60.0


def asked_wait(response: requests.Response | None) -> float | None:
    """The seconds a 429 or 503 asks to wait before trying again (Retry-After,
    in seconds), or None when it asks nothing."""
    if response is None or response.status_code not in (429, 503):
        return None
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if not 0 <= seconds < float("inf"):
        return None
    return min(seconds, MAX_ASKED_WAIT)


class BatchSender:
    """POST queued items as `encode(items)` to `url`, never blocking the producer."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        encode: Callable[[list[Any]], Any],
        name: str,
        max_queue: int = 10_000,
        max_batch: int = 500,
        interval: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.name = name
        self.max_batch = max_batch
        self.interval = interval
        self.timeout = timeout
        self._encode = encode
        self._headers = {"Content-Type": "application/json", **headers}
        self._queue: collections.deque = collections.deque()
        self._max_queue = max_queue
        self._lock = threading.Lock()  # guards the queue and the counters
        self._sent = 0
        self._dropped = 0
        self._rejected = 0
        self._in_flight = 0
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._session = requests.Session()
        self._failing = False
        self._asked_wait: float | None = None  # a 429/503's Retry-After
        self._thread = threading.Thread(
            target=self._run, name=f"sollol-{name}", daemon=True
        )
        self._thread.start()

    # --- producer side, any thread ----------------------------------------------

    def put(self, item: Any) -> bool:
        """Queue item; return False when the queue was full and the oldest dropped."""
        with self._lock:
            self._queue.append(item)
            full = len(self._queue) > self._max_queue
            if full:
                self._queue.popleft()
                self._dropped += 1
            due = len(self._queue) >= self.max_batch
        if due:
            self._wake.set()
        return not full

    @property
    def stats(self) -> dict[str, int]:
        """Return how many items were sent, dropped (queue full), rejected (4xx)."""
        with self._lock:
            return {
                "sent": self._sent,
                "dropped": self._dropped,
                "rejected": self._rejected,
                "queued": len(self._queue) + self._in_flight,
            }

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything queued now; return whether it all left within timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._lock:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (waiting at most timeout), then stop the thread."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    # --- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        with sender_thread():
            self._loop()

    def _loop(self) -> None:
        retry_delay = self.interval
        try:
            while True:
                stopping = self._stopping.is_set()
                if not stopping:
                    self._wake.wait(self.interval)
                    self._wake.clear()
                sent_all = self._send_queued()
                if self._stopping.is_set() and (sent_all or stopping):
                    return
                if sent_all:
                    retry_delay = self.interval
                elif self._asked_wait is not None:
                    # The dashboard said when: then, not sooner, and no backoff.
                    asked, self._asked_wait = self._asked_wait, None
                    self._stopping.wait(random.uniform(asked, asked * 1.2 + 0.05))
                else:
                    self._stopping.wait(random.uniform(retry_delay / 2, retry_delay))
                    retry_delay = min(retry_delay * 2, 30.0)
        finally:
            self._session.close()
            with self._lock:
                self._idle.notify_all()

    def _send_queued(self) -> bool:
        """Send batches until the queue is empty; False when the dashboard failed."""
        while True:
            with self._lock:
                batch = [
                    self._queue.popleft()
                    for _ in range(min(self.max_batch, len(self._queue)))
                ]
                self._in_flight = len(batch)
                if not batch:
                    self._idle.notify_all()
                    return True
            outcome = self._post(batch)
            with self._lock:
                self._in_flight = 0
                if outcome == "retry":
                    # Back to the front, oldest first, within the bound.
                    self._queue.extendleft(reversed(batch))
                    while len(self._queue) > self._max_queue:
                        self._queue.popleft()
                        self._dropped += 1
                    self._idle.notify_all()
                    return False
                if outcome == "sent":
                    self._sent += len(batch)
                else:
                    self._rejected += len(batch)

    def _post(self, batch: list[Any]) -> str:
        """Return "sent", "rejected" (the dashboard refused it) or "retry"."""
        try:
            body = json.dumps(self._encode(batch), default=str, allow_nan=False)
        except ValueError as exc:
            logger.warning("%s: dropped a batch that is not JSON: %s", self.name, exc)
            return "rejected"
        try:
            response = self._session.post(
                self.url, data=body, headers=self._headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            self._failure(f"cannot reach it ({type(exc).__name__})")
            return "retry"
        status = response.status_code
        if status in (408, 429) or status >= 500:
            self._asked_wait = asked_wait(response)
            self._failure(f"it answered {status}")
            return "retry"
        if self._failing:
            self._failing = False
            logger.info("%s: the dashboard at %s answers again", self.name, self.url)
        if status >= 400:
            logger.warning(
                "%s: the dashboard refused %d items: %s %s",
                self.name,
                len(batch),
                status,
                response.text[:200],
            )
            return "rejected"
        return "sent"

    def _failure(self, reason: str) -> None:
        if not self._failing:
            self._failing = True
            logger.warning("%s: dashboard at %s: %s", self.name, self.url, reason)

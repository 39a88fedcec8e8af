"""Asking a scheduled task to run now, rather than at its next turn.

A domain that learns something a periodic task should act on at once (the
alerting engine, of a node that changed) calls `wake(task_name)`. Whoever runs
the schedule in this process subscribes: the embedded scheduler inside `serve`
runs the task's entry at once; a Celery worker sends the task to the queue
(sollol_site/celery.py). With nobody subscribed, a wake is nothing: the task
runs at its next turn, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

_handlers: list[Callable[[str], None]] = []
_lock = threading.Lock()


def subscribe(handler: Callable[[str], None]) -> Callable[[], None]:
    """Call handler(task_name) at each wake; return what unsubscribes it."""
    with _lock:
        if handler not in _handlers:  # once, however many times subscribed
            _handlers.append(handler)

    def unsubscribe() -> None:
        with _lock:
            if handler in _handlers:
                _handlers.remove(handler)

    return unsubscribe


def wake(task_name: str) -> None:
    """Ask for task_name to run now (from any thread); never raises."""
    with _lock:
        handlers = list(_handlers)
    for handler in handlers:
        try:
            handler(task_name)
        except Exception:
            logger.exception("waking %s failed", task_name)

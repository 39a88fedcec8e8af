"""The one place that talks to the channel layer.

Committed events are *announced* to their stream's group; consumers then read the
events themselves from the log, in id order. The log is the source of truth, so a
lost announcement delays an event but never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# The server's event loop. Code running in other threads (the batch writer, views
# run by sync_to_async) hands its sends to this loop rather than making its own:
# the in-memory channel layer belongs to one loop.
_server_loop: asyncio.AbstractEventLoop | None = None
# A helper process with no channel layer of its own (the gateway's writer process)
# hands its sends to its parent through this instead.
_forwarder: Callable[[str, dict[str, Any]], None] | None = None


def attach_running_loop() -> None:
    """Remember the running loop as the one that serves consumers."""
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def group_name(stream: str) -> str:
    return f"events.{stream}"


async def subscribe(stream: str, channel_name: str) -> None:
    await get_channel_layer().group_add(group_name(stream), channel_name)


async def unsubscribe(stream: str, channel_name: str) -> None:
    await get_channel_layer().group_discard(group_name(stream), channel_name)


def samples_group(stream: str) -> str:
    return f"samples.{stream}"


async def subscribe_samples(stream: str, channel_name: str) -> None:
    await get_channel_layer().group_add(samples_group(stream), channel_name)


async def unsubscribe_samples(stream: str, channel_name: str) -> None:
    await get_channel_layer().group_discard(samples_group(stream), channel_name)


def publish_samples(stream: str, payload: dict[str, Any]) -> None:
    """Send measurements (a node's latency, an app's last heartbeat) to viewers.

    Samples are not events: they change nothing, are not stored in the log and
    are not replayed; one that is lost is replaced by the next. Only sockets that
    asked for them (?samples=1) get them, so every event stream message still has
    an id.
    """
    _send(samples_group(stream), {"type": "samples.available", "payload": payload})


def announce(stream: str, event_id: int) -> None:
    """Tell the stream's subscribers that events up to event_id are committed."""
    _send(group_name(stream), {"type": "events.available", "id": event_id})


def forward_to(forwarder: Callable[[str, dict[str, Any]], None] | None) -> None:
    """Hand every send of this process to forwarder(group, message) (None: stop)."""
    global _forwarder
    _forwarder = forwarder


def send_forwarded(group: str, message: dict[str, Any]) -> None:
    """Send what a helper process forwarded (see forward_to) to its group."""
    _send(group, message)


def _send(group: str, message: dict[str, Any]) -> None:
    if _forwarder is not None:
        _forwarder(group, message)
        return

    async def send() -> None:
        await get_channel_layer().group_send(group, message)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        running.create_task(send()).add_done_callback(_log_failure)
    elif _server_loop is not None and _server_loop.is_running():
        asyncio.run_coroutine_threadsafe(send(), _server_loop).add_done_callback(
            _log_failure
        )
    elif _interpreter_exiting():
        # A thread still writing while the process exits (a log record of a
        # cluster closing after the server stopped): the event is stored; nobody
        # is left to tell, and no new loop can start now.
        logger.debug("not announcing to %s: the process is exiting", group)
    else:
        # A Celery worker or a management command: no server loop here.
        try:
            async_to_sync(send)()
        except Exception as exc:
            if _interpreter_exiting() or "interpreter shutdown" in str(exc):
                logger.debug("not announcing to %s: the process is exiting", group)
            else:
                logger.exception("could not announce to %s", group)


def _interpreter_exiting() -> bool:
    """True once the main thread has finished and the interpreter is shutting down.

    From then on async_to_sync cannot start its loop ("cannot schedule new futures
    after interpreter shutdown").
    """
    return sys.is_finalizing() or not threading.main_thread().is_alive()


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("could not announce an event", exc_info=future.exception())

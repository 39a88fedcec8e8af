"""What both simulators share: control from any thread, and the server lifecycle."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def on_loop(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a control method on the object's loop when called from another thread.

    The object keeps `_loop` (its running loop) and `_loop_thread` (that loop's
    thread id); before start() or after stop() the method runs where it is called.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> _T:
        loop = self._loop
        if (
            loop is None
            or not loop.is_running()
            or threading.get_ident() == self._loop_thread
        ):
            return method(self, *args, **kwargs)
        result: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(method(self, *args, **kwargs))
            except BaseException as exc:  # handed to the calling thread
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout=30)

    return wrapper


class ListeningServer:
    """Listen, die and revive on one loop: the lifecycle both simulators share.

    A subclass names its `listener_class` (made with loop, host, port and a
    protocol factory) and `protocol_class` (made with the server and the current
    generation); its connections have `abort()`. Each listen starts a generation,
    and die() ends it, so connections still being adopted are dropped too.
    """

    listener_class: Any
    protocol_class: Any
    kind = "server"

    def __init__(self) -> None:
        self.alive = False
        self._connections: set = set()
        self._listener: Any = None
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def start(self) -> None:
        """Start listening (on the running loop, which then owns the server)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._started()
        self._listen()

    def _started(self) -> None:
        """Set up what lives on the loop, before the first listen."""

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        self.die()
        await asyncio.sleep(0)  # let the transports close

    def _listen(self) -> None:
        assert self._loop is not None
        self._generation += 1
        generation = self._generation

        def serve() -> Any:
            return self.protocol_class(self, generation)

        self._listener = self.listener_class(self._loop, self.host, self.port, serve)
        self.port = self._listener.port  # port 0 asked for any free port
        self.alive = True

    @on_loop
    def die(self) -> None:
        """Crash: stop listening and drop open connections (then: refused)."""
        self.alive = False
        self._generation += 1  # connections still being adopted are dropped too
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for connection in list(self._connections):
            connection.abort()
        self._connections.clear()

    @on_loop
    def revive(self) -> None:
        """Listen again on the same address."""
        if self.alive:
            return
        if self._loop is None:
            raise RuntimeError(f"start() the {self.kind} before reviving it")
        self._revived()
        self._listen()

    def _revived(self) -> None:
        """Reset what a crash should not carry over, before listening again."""

"""What both simulators share: control methods callable from any thread."""

from __future__ import annotations

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

"""Requests that take time on a simulated node: slots, a queue, paced tokens.

Ollama runs at most ``num_parallel`` requests at once per model runner and keeps
up to ``max_queue`` more waiting (past that: 503 "server busy"). It sends nothing
while a request waits; a streamed answer's head goes out with its first token,
then one chunk per token, then the ``done`` chunk. A client that goes away
cancels its request, queued or generating, and frees its slot.

``Slots`` is that queue for one node (here, one for the whole node). A ``Work`` is
one request in it, a ``Deferred`` answer of ``simulator.httpserver``: it waits for
a slot, then for the model to load and the first token, then writes. It is woken
at absolute due times, so a late loop catches up instead of drifting (what is owed
goes out in one write), by a ``Pacer``: one loop timer a millisecond for all the
node's streams rather than one per token. Per token it does little: the writer's
pre-encoded pieces, one ``transport.write``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from simulator.httpserver import Deferred, HttpConnection, Request, Response


@dataclass
class Pace:
    """How a node generates: ``SimulatedNode.set_generation``'s settings."""

    token_rate: float = 0.0  # tokens/s; 0: every token at once
    first_token: float = 0.0  # seconds from a slot to the first token
    load_seconds: float = 0.0  # more before it, for a model not yet loaded
    num_parallel: int = 1  # requests generating at once
    max_queue: int = 512  # requests waiting for a slot; more: 503

    def __post_init__(self) -> None:
        for name in ("token_rate", "first_token", "load_seconds"):
            value = float(getattr(self, name))
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"{name} is a finite number >= 0, not {value}")
            setattr(self, name, value)
        if int(self.num_parallel) < 1:
            raise ValueError("num_parallel is at least 1")
        if int(self.max_queue) < 0:
            raise ValueError("max_queue cannot be negative")
        self.num_parallel = int(self.num_parallel)
        self.max_queue = int(self.max_queue)

    @property
    def timed(self) -> bool:
        """Return whether generating takes simulated time at all."""
        return bool(self.token_rate or self.first_token or self.load_seconds)


@dataclass(slots=True)
class Timing:
    """What one request took, in seconds, for its duration fields."""

    arrived: float  # loop time
    started: float = 0.0  # it had a slot
    load: float = 0.0  # waited for the model to load
    first_token: float = 0.0  # then for the first token
    token_rate: float = 0.0
    tokens: int = 0
    paced: bool = True  # False: answered at once, no simulated time at all

    def generating(self) -> float:
        """Return the seconds its tokens took (``eval_duration``)."""
        if self.token_rate > 0:
            return self.tokens / self.token_rate
        return self.tokens * 0.0001  # "at once": 10,000 tokens/s


class Pacer:
    """Wake callbacks at loop times, at most a millisecond late, one timer a slot.

    At 1,000 streams of 50 tokens a second, a timer per token is 50,000 timers a
    second; grouped by millisecond, a thousand. Nothing is cancelled: a callback
    whose work is over finds it so and returns.
    """

    RESOLUTION = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[int, list[Callable[[], None]]] = {}

    def at(self, when: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` at loop time ``when`` (rounded up to the millisecond)."""
        slot = math.ceil(when / self.RESOLUTION)
        callbacks = self.due.get(slot)
        if callbacks is None:
            callbacks = self.due[slot] = []
            self.loop.call_at(slot * self.RESOLUTION, self._run, slot)
        callbacks.append(callback)

    def _run(self, slot: int) -> None:
        for callback in self.due.pop(slot, ()):
            callback()


class Slots:
    """One node's slots and queue, and the clients that went away."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self.generating: set[Work] = set()
        self.waiting: deque[Work] = deque()
        self.dropped: list[float] = []  # time.monotonic() of each client gone
        self._pacer: Pacer | None = None

    def pacer(self, loop: asyncio.AbstractEventLoop) -> Pacer:
        """Return the pacer of the node's streams on ``loop``."""
        if self._pacer is None or self._pacer.loop is not loop:
            self._pacer = Pacer(loop)
        return self._pacer

    def full(self) -> bool:
        """Return whether one more request would be refused (503)."""
        return (
            len(self.generating) >= self.pace.num_parallel
            and len(self.waiting) >= self.pace.max_queue
        )

    def free(self) -> bool:
        """Return whether a request arriving now would start at once."""
        return len(self.generating) < self.pace.num_parallel and not self.waiting

    def admit(self, work: Work) -> None:
        """Start ``work`` if a slot is free, else queue it behind the others."""
        if not work.needs_slot:
            work.start()
        elif len(self.generating) < self.pace.num_parallel and not self.waiting:
            self.generating.add(work)
            work.start()
        else:
            self.waiting.append(work)

    def withdraw(self, work: Work, client_gone: bool) -> None:
        """Take ``work`` out (done, cut, or its client gone); start who waits."""
        if client_gone:
            self.dropped.append(time.monotonic())
        if work in self.generating:
            self.generating.discard(work)
        else:
            try:
                self.waiting.remove(work)
            except ValueError:
                pass
        self.refill()

    def refill(self) -> None:
        """Start waiting work while slots are free (num_parallel may have grown)."""
        while self.waiting and len(self.generating) < self.pace.num_parallel:
            work = self.waiting.popleft()
            self.generating.add(work)
            work.start()


class Writer(Protocol):
    """How answers look in bytes: ``simulator.ollama.NativeWriter`` (NDJSON,
    JSON) or the writers of ``simulator.openai`` (server-sent events, OpenAI JSON).
    """

    def head(self) -> Response: ...

    def token(self, text: str, ns: int) -> bytes: ...

    def final(self, answer: dict[str, Any]) -> bytes: ...

    def whole(self, answer: dict[str, Any]) -> Response: ...


_QUEUED, _RUNNING, _DONE = 0, 1, 2


class Work(Deferred):
    """One request that waits for a slot and for simulated time, then answers.

    ``prepare(now)`` runs when it gets its slot and returns the seconds the model
    still needs to load; ``respond(timing)`` makes the answer when it is due;
    ``finished()`` runs once it is answered (Ollama restarts the keep-alive).
    """

    __slots__ = (
        "slots",
        "loop",
        "needs_slot",
        "prepare",
        "respond",
        "finished",
        "connection",
        "pacer",
        "state",
        "timing",
    )

    def __init__(
        self,
        slots: Slots,
        loop: asyncio.AbstractEventLoop,
        *,
        prepare: Callable[[float], float],
        respond: Callable[[Timing], Response] | None = None,
        finished: Callable[[], None] = lambda: None,
        needs_slot: bool = True,
    ) -> None:
        self.slots = slots
        self.loop = loop
        self.needs_slot = needs_slot
        self.prepare = prepare
        self.respond = respond
        self.finished = finished
        self.connection: HttpConnection | None = None
        self.pacer = slots.pacer(loop)
        self.state = _QUEUED
        self.timing = Timing(loop.time())

    def begin(self, connection: HttpConnection, request: Request) -> None:
        """Queue for a slot (the connection answers nothing else meanwhile)."""
        self.connection = connection
        self.slots.admit(self)

    def start(self) -> None:
        """It has a slot: load if needed, then answer when due."""
        self.state = _RUNNING
        timing = self.timing
        timing.started = now = self.loop.time()
        timing.load = self.prepare(now)
        self.pacer.at(now + timing.load, self._answer)

    def _answer(self) -> None:
        if self.state != _RUNNING or self.respond is None:
            return
        response = self.respond(self.timing)
        self._complete()
        assert self.connection is not None
        self.connection.finish(response)

    def _complete(self) -> None:
        self.state = _DONE
        self.slots.withdraw(self, client_gone=False)
        self.finished()

    def lost(self, client_gone: bool) -> None:
        """The connection went away first: stop, give the slot back."""
        if self.state == _DONE:
            return
        self.state = _DONE  # what the pacer wakes finds it over
        self.slots.withdraw(self, client_gone)


class Generation(Work):
    """Tokens paced at the node's rate: streamed chunk by chunk, or whole at the end.

    ``answer(text, timing)`` returns the native ``done`` answer (text "" for a
    stream's last chunk, the whole reply for a non-streamed one); the writer turns
    it and each token into bytes. ``cut``: abort after that many body chunks.
    """

    __slots__ = (
        "writer",
        "tokens",
        "stream",
        "answer",
        "clock",
        "cut",
        "first",
        "interval",
        "sent",
        "written",
    )

    def __init__(
        self,
        slots: Slots,
        loop: asyncio.AbstractEventLoop,
        *,
        writer: Writer,
        tokens: list[str],
        stream: bool,
        answer: Callable[[str, Timing], dict[str, Any]],
        prepare: Callable[[float], float],
        finished: Callable[[], None],
        clock: Callable[[], int],
        cut: int | None = None,
    ) -> None:
        super().__init__(slots, loop, prepare=prepare, finished=finished)
        self.writer = writer
        self.tokens = tokens
        self.stream = stream
        self.answer = answer
        self.clock = clock
        self.cut = cut if stream else None
        self.first = 0.0  # loop time of the first token
        self.interval = 0.0
        self.sent = 0  # tokens written
        self.written = 0  # body chunks written

    def start(self) -> None:
        """It has a slot: schedule the first token (or the whole answer)."""
        self.state = _RUNNING
        pace = self.slots.pace
        timing = self.timing
        timing.started = now = self.loop.time()
        timing.load = self.prepare(now)
        timing.first_token = pace.first_token
        timing.token_rate = pace.token_rate
        timing.tokens = len(self.tokens)
        self.first = now + timing.load + pace.first_token
        self.interval = 1.0 / pace.token_rate if pace.token_rate > 0 else 0.0
        if self.stream:
            self.pacer.at(self.first, self._tick)
        else:
            last = self.first + (len(self.tokens) - 1) * self.interval
            self.pacer.at(last, self._whole)

    def _tick(self) -> None:
        """Write the token that is due (and any a late loop owes), then wait."""
        if self.state != _RUNNING:
            return
        tokens, writer = self.tokens, self.writer
        count, first, interval = len(tokens), self.first, self.interval
        start = self.sent
        stop = start + 1  # the token it was scheduled for, even a hair early
        now = self.loop.time()
        while stop < count and first + stop * interval <= now:
            stop += 1  # behind: what is owed goes out in the same write
        clock = self.clock  # every chunk stamped when made, as Ollama's are
        chunks = [writer.token(tokens[i], clock()) for i in range(start, stop)]
        self.sent = stop
        end = stop >= count
        if end:
            chunks.append(writer.final(self.answer("", self.timing)))
        if self._write(chunks, end) and not end:
            self.pacer.at(first + stop * interval, self._tick)

    def _write(self, chunks: list[bytes], end: bool) -> bool:
        """Write body chunks; False if the stream ended or was cut instead."""
        connection = self.connection
        assert connection is not None
        head = None if self.written else self.writer.head()
        cut = self.cut
        total = self.written + len(chunks)
        if cut is not None and (total > cut or (total == cut and not end)):
            chunks = chunks[: cut - self.written]
            if chunks:
                connection.stream(chunks, head=head)
            self.written += len(chunks)
            connection.abort()  # lost(): the slot is given back
            return False
        self.written += len(chunks)
        if end:
            self._complete()
        connection.stream(chunks, head=head, end=end)
        return not end

    def _whole(self) -> None:
        if self.state != _RUNNING:
            return
        response = self.writer.whole(self.answer("".join(self.tokens), self.timing))
        self._complete()
        assert self.connection is not None
        self.connection.finish(response)

    def at_once(self) -> Response:
        """Answer now, as a node with no pace does: every chunk in one write."""
        self.state = _RUNNING
        self.timing.tokens = len(self.tokens)
        self.timing.paced = False
        writer = self.writer
        if self.stream:
            clock = self.clock
            chunks = [writer.token(text, clock()) for text in self.tokens]
            chunks.append(writer.final(self.answer("", self.timing)))
            response = writer.head()
            response.chunks = chunks
        else:
            response = writer.whole(self.answer("".join(self.tokens), self.timing))
        self.state = _DONE
        self.finished()
        return response


__all__ = ["Generation", "Pace", "Pacer", "Slots", "Timing", "Work", "Writer"]

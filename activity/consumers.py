"""The base of every event stream: replay from the log, then follow it live."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from activity import logs, services, streams
from activity.tail import get_tail
from core import realtime
from core.jsonio import PayloadError
from core.lean.websocket import SEND_MANY

REPLAY_BATCH = 500
# With ?batch=1, events that arrive within this many seconds travel as one message.
BATCH_WINDOW = 0.2
SEND_MANY_LINES = 256  # lines per write, so a slow viewer's socket still pushes back


class EventStreamConsumer(AsyncWebsocketConsumer):
    """Send a stream's events in id order, each exactly once, from ?since=<id> on.

    It subscribes before it reads, so an event committed during the replay is either
    in the replay or announced after it; every announcement only says "read the log
    past what you have sent", so nothing is skipped and nothing is sent twice.
    """

    stream: str = ""
    last_sent: int = 2**63 - 1  # until connect() knows where to start

    async def connect(self) -> None:
        realtime.attach_running_loop()
        since = since_of(query_of(self.scope))
        if since is None:
            await reject(self, "since must be a non-negative integer event id")
            return
        await realtime.subscribe(self.stream, self.channel_name)
        query = query_of(self.scope)
        self.samples = flag(query, "samples")
        self.batch = flag(query, "batch")
        self.flush_due: asyncio.Task | None = None
        self.flush_pending = False
        if self.samples:
            await realtime.subscribe_samples(self.stream, self.channel_name)
        if since < 0:
            # Live only: everything committed after the handshake, so the watermark
            # is read before the client learns it is connected.
            since = await database_sync_to_async(services.last_event_id)(self.stream)
        self.last_sent = since
        await self.accept()
        await self._send_new_events()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "flush_due", None) is not None:
            self.flush_due.cancel()
        await realtime.unsubscribe(self.stream, self.channel_name)
        if getattr(self, "samples", False):
            await realtime.unsubscribe_samples(self.stream, self.channel_name)

    async def samples_available(self, message: dict) -> None:
        await self.send(text_data=json.dumps({"type": "samples", **message["payload"]}))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # The streams are one-way; a client's messages are ignored.
        return

    async def events_available(self, message: dict) -> None:
        if message["id"] <= self.last_sent:
            return
        if not self.batch:
            await self._send_new_events()
            return
        # Gather what comes within BATCH_WINDOW into one message; the handler
        # returns at once, so the socket's other messages are not held up.
        self.flush_pending = True
        if self.flush_due is None:
            self.flush_due = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        """Send what was announced, a window later; again while announcements came
        during a send (one task at a time, so nothing is read or sent twice)."""
        try:
            while self.flush_pending:
                await asyncio.sleep(BATCH_WINDOW)
                self.flush_pending = False
                await self._send_new_events()
        finally:
            self.flush_due = None

    async def _send_new_events(self) -> None:
        while True:
            events = await database_sync_to_async(services.events_after)(
                self.stream, self.last_sent, limit=REPLAY_BATCH
            )
            if self.batch and events:
                parts = [json.dumps(event.as_message()) for event in events]
                last = events[-1].id
                await self.send(
                    text_data=batch_text("batch", "events", "events", last, parts)
                )
                self.last_sent = events[-1].id
            else:
                for event in events:
                    await self.send(text_data=json.dumps(event.as_message()))
                    self.last_sent = event.id
            if len(events) < REPLAY_BATCH:
                return


def batch_text(kind: str, noun: str, key: str, last_id: int, parts: list[str]) -> str:
    """Many messages as one: {"id": <the last>, "type": kind, "timestamp",
    "message", "count", key: [each part exactly as it would be sent alone]}."""
    head = json.dumps(
        {
            "id": last_id,
            "type": kind,
            "timestamp": time.time(),
            "message": f"{len(parts)} {noun}",
            "count": len(parts),
        }
    )
    return f'{head[:-1]},"{key}":[{",".join(parts)}]}}'


def flag(query: dict[str, str], name: str) -> bool:
    """Whether a query parameter is on (?batch=1, =true or =yes)."""
    return query.get(name, "").lower() in ("1", "true", "yes")


def query_of(scope: dict) -> dict[str, str]:
    """Return a socket's query parameters, the last value of each."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {key: values[-1] for key, values in query.items()}


def since_of(query: dict[str, str]) -> int | None:
    """Return ?since as an int, -1 when absent (live only), None when malformed."""
    if "since" not in query:
        return -1
    try:
        since = int(query["since"])
    except ValueError:
        return None
    # Ids are int64: a bigger position is no position, and the socket stayed silent.
    return since if 0 <= since < 2**63 else None


async def reject(consumer: AsyncWebsocketConsumer, reason: str) -> None:
    """Accept the socket only to say why it is refused, then close it with 4400."""
    await consumer.accept()
    await consumer.send(text_data=json.dumps({"type": "error", "message": reason}))
    await consumer.close(code=4400)


class ModelActivityConsumer(EventStreamConsumer):
    stream = streams.MODEL_ACTIVITY


class LogStreamConsumer(AsyncWebsocketConsumer):
    """/ws/logs: every committed line that passes the viewer's filter, in id order.

    ?level=WARNING (that level and above), ?app_id=..., ?q=text, ?since=<id> to
    replay, ?batch=1 to receive lines that arrive together as one "log_batch"
    message ({"type": "log_batch", "lines": [log, ...]}) instead of one message
    per line, for viewers of busy fleets.
    """

    last_sent: int = 2**63 - 1

    async def connect(self) -> None:
        realtime.attach_running_loop()
        query = query_of(self.scope)
        since = since_of(query)
        try:
            self.filter = logs.parse_filter(query)
        except PayloadError as exc:
            await reject(self, str(exc))
            return
        if since is None:
            await reject(self, "since must be a non-negative integer log id")
            return
        self.batch = flag(query, "batch")
        self.send_many = SEND_MANY in (self.scope.get("extensions") or {})
        await realtime.subscribe(streams.LOGS, self.channel_name)
        tail = get_tail()
        await tail.catch_up()
        self.last_sent = tail.high if since < 0 else since
        await self.accept()
        await self._send_new_lines()

    async def disconnect(self, code: int) -> None:
        await realtime.unsubscribe(streams.LOGS, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        return

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections before every message, with a
        # trip to the ORM's thread: per announcement and viewer, 7-10 % of the
        # event loop with 50 viewers (py-spy, bench/logs.py). This consumer reads
        # the database only through database_sync_to_async, which does it there.
        if message["type"] == "events.available":
            await self.events_available(message)
        else:
            await super().dispatch(message)

    async def events_available(self, message: dict) -> None:
        if message["id"] > self.last_sent:
            await self._send_new_lines(message["id"])

    async def _send_new_lines(self, up_to: int | None = None) -> None:
        tail = get_tail()
        await tail.catch_up(up_to)
        while self.last_sent < tail.start:
            # Older than this process's tail: replay from the database.
            boundary = tail.start
            lines = await database_sync_to_async(logs.lines_after)(
                self.last_sent, up_to=boundary, filter=self.filter, limit=REPLAY_BATCH
            )
            await self._deliver(lines)
            self.last_sent = lines[-1][0] if len(lines) == REPLAY_BATCH else boundary
        lines, high = tail.after(self.last_sent, self.filter)
        await self._deliver(lines)
        self.last_sent = max(self.last_sent, high)

    async def _deliver(self, lines: list[tuple[int, str]]) -> None:
        if not lines:
            return
        if not self.batch:
            await self._send_each(lines)
            return
        parts = [text for _, text in lines]
        await self.send(
            text_data=batch_text("log_batch", "log lines", "lines", lines[-1][0], parts)
        )

    async def _send_each(self, lines: list[tuple[int, str]]) -> None:
        """Send every line as its own message; many at once where the server can."""
        if not self.send_many:
            for _, text in lines:
                await self.send(text_data=text)
            return
        for start in range(0, len(lines), SEND_MANY_LINES):
            chunk = lines[start : start + SEND_MANY_LINES]
            await self.base_send(
                {"type": SEND_MANY, "texts": [text for _, text in chunk]}
            )

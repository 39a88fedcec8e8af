"""The base of every event stream: replay from the log, then follow it live."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from activity import services
from activity.choices import Stream
from sollol_site import realtime

REPLAY_BATCH = 500


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
        since = self._since()
        if since is None:
            await self.accept()
            await self._reject("since must be a non-negative integer event id")
            return
        await realtime.subscribe(self.stream, self.channel_name)
        if since < 0:
            # Live only: everything committed after the handshake, so the watermark
            # is read before the client learns it is connected.
            since = await database_sync_to_async(services.last_event_id)(self.stream)
        self.last_sent = since
        await self.accept()
        await self._send_new_events()

    async def disconnect(self, code: int) -> None:
        await realtime.unsubscribe(self.stream, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # The streams are one-way; a client's messages are ignored.
        return

    async def events_available(self, message: dict) -> None:
        if message["id"] > self.last_sent:
            await self._send_new_events()

    async def _send_new_events(self) -> None:
        while True:
            events = await database_sync_to_async(services.events_after)(
                self.stream, self.last_sent, limit=REPLAY_BATCH
            )
            for event in events:
                await self.send(text_data=json.dumps(event.as_message()))
                self.last_sent = event.id
            if len(events) < REPLAY_BATCH:
                return

    def _since(self) -> int | None:
        """Return ?since as an int, -1 when absent (live only), None when malformed."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        values = query.get("since")
        if not values:
            return -1
        try:
            since = int(values[-1])
        except ValueError:
            return None
        return since if since >= 0 else None

    async def _reject(self, reason: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "message": reason}))
        await self.close(code=4400)


class ModelActivityConsumer(EventStreamConsumer):
    stream = Stream.OLLAMA_ACTIVITY

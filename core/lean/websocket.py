"""uvicorn's WebSocket protocol, able to send many messages in one write.

A log viewer in per-line mode gets one WebSocket message per line: at 2,000 lines/s
and 50 viewers, 100,000 messages a second. Sent one ASGI `websocket.send` at a
time, each message cost the event loop a pass through Channels and uvicorn and a
write to the socket of its own (a syscall, and on loopback the receiver's TCP work
too, in the sender's time; a third of the event loop in py-spy). The event loop
spent 0.31-0.38 of a core per 1,000 lines/s, and took only 1,200-1,730 of the
2,000 lines/s offered. Sent as below (and with LogStreamConsumer.dispatch), it
spends 0.14-0.15, about what ?batch=1 costs, and takes them all (bench/logs.py,
2026-12-04).

This protocol offers the ASGI extension SEND_MANY in the socket's scope. A consumer
that finds it sends `{"type": SEND_MANY, "texts": [...]}`: every text becomes its
own WebSocket message, exactly as if sent one by one, in order, and all of them
are framed in one go and written at once. Where the extension is absent (daphne,
Channels' test communicator) a consumer sends one message at a time, as before.
"""

from __future__ import annotations

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)
from websockets.exceptions import InvalidState
from websockets.http11 import Request

SEND_MANY = "sollol.websocket.send_many"


class SendManyWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol (uvicorn 0.54), with SEND_MANY."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The application's task starts on the loop's next turn, with this scope.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_MANY] = {}

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] != SEND_MANY:
            await super().send(message)
            return
        # What uvicorn checks before a websocket.send, for the whole list at once.
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if not self.handshake_complete or self.initial_response is not None:
            raise RuntimeError(f"'{SEND_MANY}' before 'websocket.accept'.")
        if self.close_sent:
            raise RuntimeError(f"Unexpected '{SEND_MANY}' after 'websocket.close'.")
        try:
            for text in message["texts"]:  # type: ignore[typeddict-item]
                self.conn.send_text(text.encode())
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))

"""A simulated llama.cpp ggml RPC server on loopback: the far side for RPC tests.

It speaks the part of the protocol a probe uses (HELLO, DEVICE_COUNT,
GET_DEVICE_MEMORY, GET_ALIGNMENT, GET_MAX_SIZE) the way each generation of
`ggml-rpc-server` does, and fails the way the real one fails:

- it serves one client at a time, in order of arrival; the others wait, connected
  but unanswered, as in the real server's listen backlog, which holds two (closed
  ones too, with a FIN or an RST, until their turn): further connects hang, their
  SYNs dropped. A client that closes its half gets the server's close back when its
  turn comes (at once, when the server is free), or a reset if the server dies
  first;
- it closes the connection, without a reply, on a first request that is not its
  generation's (a HELLO of the wrong size, a HELLO at all before protocol 1, any
  other command before HELLO from protocol 1 on) and on commands it does not
  implement (the real one would run them; a probe never sends them);
- it "dies of SIGPIPE" when it replies to a client that had sent its request and
  then closed normally (FIN) while waiting: the real server's second send() to
  such a socket raises SIGPIPE, which kills it. A client that closed with an RST
  is only dropped, as the real server (ECONNRESET, no signal) drops it. The
  simulator cannot tell a half-closed client that still reads from one that has
  gone; the real server can, and survives the former.

Control methods (attach, detach, die, revive) are thread-safe: called from another
thread they run on the server's loop. ``running_rpc_server`` runs one on a
background thread for synchronous code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from simulator.loops import ListeningServer, on_loop

DEFAULT_PROTOCOL = "7.0.0"  # llama.cpp as vendored by llama-cpp-python 0.3.36
GIB = 1024**3

CMD_GET_ALIGNMENT = 1
CMD_GET_MAX_SIZE = 2
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15
CONN_CAPS_SIZE = 24
ALIGNMENT = 32
MAX_SIZE = 2**64 - 1  # SIZE_MAX: the CPU backend has no maximum buffer size


class _Connection(asyncio.Protocol):
    """One client: bytes buffered as they arrive, served when its turn comes."""

    def __init__(self, server: SimulatedRpcServer, generation: int) -> None:
        self.server = server
        self.generation = generation
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer = "open"  # "open", "fin" (closed normally) or "reset"
        self.sent_bytes = False
        self.in_session = False  # has sent a byte and is not closed yet
        self.turn_came = False  # the real server would have accept()ed it
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        if not self.server._adopt(self):
            transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.sent_bytes:
            self.sent_bytes = True
            self.in_session = True
            self.server._session_opened()
        self.server.bytes_received += len(data)
        self.buffer += data
        self.changed.set()

    def eof_received(self) -> bool:
        self.peer = "fin"
        self.changed.set()
        self.server._session_closed(self)
        return True  # keep the socket open for writing, as a C server's is

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, BrokenPipeError):
            self.server._crash()  # the real server would have died of SIGPIPE
        if self.peer == "open":
            self.peer = "reset" if exc is not None else "fin"
        self.changed.set()
        self.server._session_closed(self)

    def abort(self) -> None:
        """Drop the client as a crashed server does: stop serving it, close.

        A connection still waiting for its turn was, in the real server, still in
        the listen queue, which the kernel resets when the process dies.
        """
        if self.task is not None:
            self.task.cancel()
        self.close(reset=not self.turn_came)

    def close(self, *, reset: bool = False) -> None:
        """Close from our side; with unread bytes the kernel would send an RST."""
        if self.transport is None or self.transport.is_closing():
            return
        if reset or self.buffer:
            sock = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.transport.abort()
        else:
            self.transport.close()

    async def read(self, count: int) -> bytes | None:
        """Return the next count bytes, or None when the client closed first."""
        while len(self.buffer) < count:
            if self.peer != "open":
                return None
            self.changed.clear()
            await self.changed.wait()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def reply(self, body: bytes) -> bool:
        """Send a reply as the real server would; False when the client is gone."""
        if self.peer == "fin":
            # First send() succeeds and draws an RST; the second raises SIGPIPE.
            self.server._crash()
            return False
        if self.peer == "reset" or self.transport is None:
            return False  # send() fails with ECONNRESET: the client is dropped
        # Two sends, as send_msg() does: a client that closed in between makes
        # the second one fail with EPIPE (see connection_lost).
        self.transport.write(struct.pack("<Q", len(body)))
        self.transport.write(body)
        return True


class _Listener:
    """A listening socket that accepts one connection at a time, like the server.

    ggml-rpc-server listens with a backlog of 1 and calls accept() only when it is
    free, so while it serves a client Linux keeps at most two more connections
    waiting (open, or already closed by their clients) and drops further SYNs:
    those clients' connects hang. Here one waiting connection is accepted early,
    so its bytes can be counted, and the kernel holds one more (backlog 0): the
    same two. Accepting resumes when the accepted one's turn comes.

    Opening and closing are synchronous, so ``die()`` is refused-at-once and
    ``die(); revive()`` in one breath just works.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self.loop = loop
        self.factory = factory
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(0)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.port: int = self.sock.getsockname()[1]
        self._adopting: set[asyncio.Task[Any]] = set()
        self._accepting = False
        self.resume()

    def resume(self) -> None:
        """Accept the next connection when one comes."""
        if not self._accepting and self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock.fileno(), self._accept)
            self._accepting = True

    def _pause(self) -> None:
        if self._accepting:
            self.loop.remove_reader(self.sock.fileno())
            self._accepting = False

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:  # nothing to accept after all, or EMFILE: try again later
            return
        self._pause()
        conn.setblocking(False)
        # As the real server does; asyncio skips it here (proto 0 from accept).
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self.loop.create_task(self._adopt(conn))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except BaseException:
            conn.close()
            self.resume()
            raise

    def close(self) -> None:
        """Stop listening: connecting is refused from now on."""
        if self.sock.fileno() >= 0:
            self._pause()
            self.sock.close()


def _require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"simulated RPC servers listen on loopback only, not {host}")


class SimulatedRpcServer(ListeningServer):
    """One simulated ggml-rpc-server of a given protocol generation.

    protocol is "major.minor.patch" (>= 4: 24-byte HELLO; 1-3: empty HELLO, and
    from 3 device indexes) or "legacy" for a server from before HELLO, whose
    GET_DEVICE_MEMORY is command 10, or 11 with ``legacy_device_memory_cmd=11``
    (the servers built between late March and mid-April 2025). devices are
    (free, total) byte counts; before protocol 3 a server has exactly one.
    revive() listens again on the same address, not attached to anyone.
    """

    listener_class = _Listener
    protocol_class = _Connection

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        protocol: str = DEFAULT_PROTOCOL,
        devices: Iterable[tuple[int, int]] = ((20 * GIB, 24 * GIB),),
        *,
        legacy_device_memory_cmd: int = 10,
    ) -> None:
        _require_loopback(host)
        super().__init__()
        self.host = host
        self.port = port
        self.protocol = protocol
        self.devices = [(int(free), int(total)) for free, total in devices]
        if protocol == "legacy":
            self.version: tuple[int, int, int] | None = None
            if legacy_device_memory_cmd not in (10, 11):
                raise ValueError("pre-HELLO GET_DEVICE_MEMORY was 10, then 11")
        else:
            major, minor, patch = (int(part) for part in protocol.split("."))
            if not 1 <= major <= 255:
                raise ValueError(f"protocol major must be 1-255, not {major}")
            self.version = (major, minor, patch)
        if not self.devices:
            raise ValueError("a ggml-rpc-server refuses to start without devices")
        if (self.version is None or self.version[0] < 3) and len(self.devices) != 1:
            raise ValueError("before protocol 3 a server exposes exactly one device")
        self.legacy_device_memory_cmd = legacy_device_memory_cmd
        self.attached = False
        self.crashes = 0  # deaths by (simulated) SIGPIPE
        self.bytes_received = 0
        self.connections_accepted = 0
        self.clients_served = 0  # connections that got their turn
        self.open_sessions = 0  # open connections that have sent a byte
        self.max_open_sessions = 0
        self._turn: asyncio.Lock | None = None
        self._detached: asyncio.Event | None = None

    def __repr__(self) -> str:
        state = "up" if self.alive else "down"
        return f"<SimulatedRpcServer {self.address} {self.protocol} {state}>"

    @property
    def address(self) -> str:
        """Return ``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Return how many accepted connections the server is not done with.

        A client that gave up while waiting counts until its turn has come and
        gone, as its request is still read then.
        """
        return len(self._connections)

    # ---------------------------------------------------------------- lifecycle

    def _started(self) -> None:
        self._turn = asyncio.Lock()
        self._detached = asyncio.Event()
        self._detached.set()

    def _revived(self) -> None:
        self.detach()  # not attached to anyone after a crash

    # ------------------------------------------------------------ control API

    @on_loop
    def attach(self) -> None:
        """Be busy with another client: accept connections, answer none of them."""
        assert self._detached is not None, "start() the server first"
        self.attached = True
        self._detached.clear()

    @on_loop
    def detach(self) -> None:
        """The other client left: serve the waiting connections, in order."""
        assert self._detached is not None, "start() the server first"
        self.attached = False
        self._detached.set()

    # ------------------------------------------------------------ connections

    def _adopt(self, connection: _Connection) -> bool:
        if not self.alive or connection.generation != self._generation:
            if self._listener is not None:
                self._listener.resume()
            return False
        assert self._loop is not None
        self.connections_accepted += 1
        self._connections.add(connection)
        connection.task = self._loop.create_task(self._serve(connection))
        return True

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        self._session_closed(connection)

    def _session_closed(self, connection: _Connection) -> None:
        if connection.in_session:
            connection.in_session = False
            self.open_sessions -= 1

    def _session_opened(self) -> None:
        self.open_sessions += 1
        self.max_open_sessions = max(self.max_open_sessions, self.open_sessions)

    def _crash(self) -> None:
        if self.alive:
            self.crashes += 1
            self.die()

    async def _serve(self, connection: _Connection) -> None:
        assert self._turn is not None and self._detached is not None
        try:
            async with self._turn:  # one client at a time, in order of arrival
                await self._detached.wait()
                connection.turn_came = True
                if self._listener is not None:
                    self._listener.resume()  # its place in the queue is free now
                if connection.peer == "open" or connection.buffer:
                    self.clients_served += 1
                    await self._converse(connection)
        finally:
            connection.close()
            self._forget(connection)

    async def _converse(self, connection: _Connection) -> None:
        if self.version is not None:
            if not await self._hello(connection):
                return
        while True:
            head = await connection.read(9)
            if head is None:
                return
            cmd, size = struct.unpack("<BQ", head)
            answer = self._answer(cmd, size)
            if answer is None:
                return  # unknown, or a payload size this command never has
            payload = await connection.read(size)
            if payload is None:
                return
            body = answer(payload)
            if body is None or not connection.reply(body):
                return

    async def _hello(self, connection: _Connection) -> bool:
        assert self.version is not None
        major, minor, patch = self.version
        head = await connection.read(9)
        if head is None:
            return False
        cmd, size = struct.unpack("<BQ", head)
        expected = CONN_CAPS_SIZE if major >= 4 else 0
        if cmd != CMD_HELLO or size != expected:
            return False  # "Expected HELLO command" / "HELLO request size mismatch"
        if await connection.read(size) is None:
            return False
        reply = bytes([major, minor, patch])
        if major >= 4:
            reply += bytes(1 + CONN_CAPS_SIZE)  # padding, no transport capabilities
        return connection.reply(reply)

    def _answer(self, cmd: int, size: int) -> Callable[[bytes], bytes | None] | None:
        """Return how to answer cmd with a payload of size bytes, or None to close."""
        indexed = self.version is not None and self.version[0] >= 3
        per_device = 4 if indexed else 0
        if self.version is None:
            device_memory = self.legacy_device_memory_cmd
        else:
            device_memory = 11
        if cmd == CMD_DEVICE_COUNT and indexed and size == 0:
            return lambda _: struct.pack("<I", len(self.devices))
        if cmd == device_memory and size == per_device:
            return self._device_memory
        if cmd == CMD_GET_ALIGNMENT and size == per_device:
            return lambda payload: self._per_device(payload, ALIGNMENT)
        if cmd == CMD_GET_MAX_SIZE and size == per_device:
            return lambda payload: self._per_device(payload, MAX_SIZE)
        return None

    def _device(self, payload: bytes) -> tuple[int, int] | None:
        index = struct.unpack("<I", payload)[0] if payload else 0
        return self.devices[index] if index < len(self.devices) else None

    def _device_memory(self, payload: bytes) -> bytes | None:
        device = self._device(payload)
        return None if device is None else struct.pack("<QQ", *device)

    def _per_device(self, payload: bytes, value: int) -> bytes | None:
        return None if self._device(payload) is None else struct.pack("<Q", value)


@contextlib.contextmanager
def running_rpc_server(
    host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> Iterator[SimulatedRpcServer]:
    """Run a SimulatedRpcServer on a background thread's loop; yield it, started."""
    server = SimulatedRpcServer(host, port, **kwargs)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_forever, name=f"rpc-sim-{host}", daemon=True
    )
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield server
    finally:
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

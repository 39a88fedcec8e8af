"""Client side of llama.cpp's ggml RPC protocol: the only code that speaks it.

The far side is `ggml-rpc-server` (llama.cpp `ggml/src/ggml-rpc/ggml-rpc.cpp`,
default port 50052). Wire format, little-endian, unchanged since the first version:

    request: | cmd: u8 | size: u64 | payload: size bytes |
    reply:   | size: u64 | payload: size bytes |

Three generations are in the field; each closes the connection on a first request
that is not its own, so a probe tries the newest first, each on a fresh connection:

    protocol >= 4   HELLO (14) with 24 bytes of connection capabilities (zeroed:
                    plain TCP); reply 28 bytes: major, minor, patch, padding, caps.
    protocol 1-3    HELLO (14) with an empty payload; reply 3 bytes: major, minor,
                    patch. HELLO must be the first command from 1.0.0 on.
    pre-HELLO       no handshake. GET_DEVICE_MEMORY was 10 until SET_TENSOR_HASH
                    was inserted before it (late March 2025), then 11; HELLO came
                    in mid-April 2025, so both numbers are in the field.

After HELLO: from protocol 3 DEVICE_COUNT (15) answers a u32, and
GET_DEVICE_MEMORY (11) takes a u32 device index; protocols 1-2 have one device and
GET_DEVICE_MEMORY takes an empty payload. Every generation answers device memory
as `free: u64, total: u64`.

The server is fragile. It serves one client at a time and leaves the others queued
in its listen backlog; it writes replies with plain send() (no MSG_NOSIGNAL) and
does not ignore SIGPIPE. If a queued client sends a request and then closes its
socket normally (FIN), the server later reads that request, sends the first part of
its reply, gets an RST back, and the next send() raises SIGPIPE and kills it. So:

- liveness is a TCP connect with no bytes sent: we close our half at once, a free
  server accepts, reads EOF and closes its half, and a busy one leaves the
  connection in its queue (`_Session.hang_up`);
- a session is opened only by a probe that will wait for the reply, and at most one
  at a time per backend from this process (a lock per (loop, host, port));
- a request that goes unanswered is abandoned with an RST, never a FIN (see
  `_Session.close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
import weakref
from dataclasses import dataclass

CMD_GET_DEVICE_MEMORY = 11  # protocol >= 1, and pre-HELLO servers after March 2025
CMD_GET_DEVICE_MEMORY_OLD = 10  # pre-HELLO servers before SET_TENSOR_HASH
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15  # protocol >= 3

CONN_CAPS_SIZE = 24  # rpc_msg_hello_req in protocol >= 4
HELLO_REPLY_SIZE = 4 + CONN_CAPS_SIZE  # major, minor, patch, padding, caps
OLD_HELLO_REPLY_SIZE = 3
DEVICE_MEMORY_REPLY_SIZE = 16

# No reply this client asks for is longer than 28 bytes; a size field this large
# means the other side speaks something else (b"HTTP/1.1" read as a u64 is huge).
MAX_REPLY_SIZE = 1024 * 1024
MAX_DEVICES = 1024


@dataclass(frozen=True)
class RpcDevice:
    """One device an RPC server exposes, with its memory in bytes."""

    index: int
    free: int
    total: int


@dataclass(frozen=True)
class RpcProbe:
    """What one probe of an RPC backend found.

    status is "online", "busy" (the port accepts but the server is serving another
    client: the HELLO went unanswered, or, without a session, the server did not take
    the connection), "offline" (no TCP connection, or reset before the server took
    it) or "incompatible" (something answers that is not this protocol).

    latency_ms is always the TCP connect time of the probe's first connection, in
    deep probes too, so shallow and deep probes give comparable numbers; it is None
    when no connection was made.

    protocol is "major.minor.patch" from HELLO, "legacy" for a pre-HELLO server,
    None when unknown.
    """

    status: str
    latency_ms: float | None = None
    protocol: str | None = None
    devices: tuple[RpcDevice, ...] = ()
    error: str | None = None
    # Offline because the TCP connect timed out (not refused): a dead host, or a
    # busy server whose queue of waiting connections is full; the caller tells
    # which from what it saw before (services.record_backend_probes).
    connect_timed_out: bool = False


class _Rejected(Exception):
    """The server closed the connection without answering: not its generation."""


class _Incompatible(Exception):
    """The reply is not something a ggml RPC server sends."""


class _NoReply(Exception):
    """No reply before the deadline: the server is serving someone else."""


# asyncio.Lock belongs to one event loop, and callers run a fresh loop per probe
# cycle (asyncio.run), so the locks are kept per loop; a dead loop's locks go with
# it. This serializes sessions within one process only: two processes probing one
# backend can still queue behind each other, which is safe, only slower.
_session_locks: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Lock]
] = weakref.WeakKeyDictionary()


def _session_lock(host: str, port: int) -> asyncio.Lock:
    locks = _session_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault((host.lower(), port), asyncio.Lock())


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class _Session:
    """One TCP connection that speaks the protocol, request by request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._unanswered = False

    @classmethod
    async def open(
        cls, host: str, port: int, deadline: float
    ) -> tuple[_Session, float]:
        """Connect; return the session and the connect time in milliseconds."""
        started = time.perf_counter()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), _remaining(deadline)
        )
        return cls(reader, writer), (time.perf_counter() - started) * 1000

    async def request(
        self, cmd: int, payload: bytes, reply_size: int, deadline: float
    ) -> bytes:
        """Send one request and read its whole reply, which must be reply_size long."""
        self._unanswered = True
        try:
            self._writer.write(struct.pack("<BQ", cmd, len(payload)) + payload)
            try:
                await asyncio.wait_for(self._writer.drain(), _remaining(deadline))
            except TimeoutError as exc:
                raise _NoReply from exc
            header = await self._read(8, deadline, first=True)
            (size,) = struct.unpack("<Q", header)
            if size > MAX_REPLY_SIZE:
                raise _Incompatible(
                    f"answered {header!r}, not a ggml RPC reply size ({size} bytes)"
                )
            if size != reply_size:
                raise _Incompatible(
                    f"command {cmd} answered {size} bytes, expected {reply_size}"
                )
            body = await self._read(size, deadline, first=False)
        except ConnectionError as exc:
            raise _Rejected(f"connection closed ({exc.__class__.__name__})") from exc
        self._unanswered = False
        return body

    async def _read(self, count: int, deadline: float, *, first: bool) -> bytes:
        try:
            return await asyncio.wait_for(
                self._reader.readexactly(count), _remaining(deadline)
            )
        except TimeoutError as exc:
            raise _NoReply from exc
        except asyncio.IncompleteReadError as exc:
            if first and not exc.partial:
                raise _Rejected("connection closed without a reply") from exc
            raise _Incompatible(
                f"connection closed after {len(exc.partial)} of {count} bytes"
            ) from exc

    async def hang_up(self, deadline: float) -> bool:
        """Close our half at once; return whether the server closed its half in time.

        No byte is sent, so nothing can be left for the server to answer. The server
        accept()s only when it is free; it then reads our EOF and closes at once
        (within a round trip). While it serves another client the connection waits
        in its listen queue, accepted by the kernel only, and nothing comes back.
        A reset instead of an EOF means the server went away with the connection
        still queued (the kernel resets those when the process dies): it raises
        ConnectionResetError.
        """
        self._unanswered = True  # if it never takes the connection, leave with RST
        self._writer.write_eof()
        try:
            await asyncio.wait_for(self._reader.read(1), _remaining(deadline))
        except TimeoutError:
            return False
        self._unanswered = False
        return True

    async def close(self) -> None:
        """Close the connection so that the server cannot die of it.

        With every reply read, the server is waiting for the next command: a normal
        close (FIN) makes its recv() return 0 and it returns to accept().

        With a request unanswered (we gave up waiting, or the caller cancelled us)
        the server may still read that request later, since queued bytes outlive
        our socket. Closing with FIN would leave its socket in CLOSE_WAIT, and an
        RST arriving there sets EPIPE: its second send() of the reply raises
        SIGPIPE. So the socket is closed with SO_LINGER 0, which sends an RST
        instead of a FIN: the server's socket goes from ESTABLISHED straight to
        closed with ECONNRESET pending. It either fails the recv() of our request
        or, if the request is still buffered, reads it and gets ECONNRESET from
        its first send(), which returns an error without a signal (the error is
        consumed there, and the server drops the client). Checked against the real
        server: FIN kills it with SIGPIPE, RST leaves it serving.

        An RST does not take a connection out of a busy server's listen queue
        (Linux keeps a reset connection there until accept()), so it frees no place
        in it either; it only leaves nothing behind on our side.
        """
        if self._unanswered:
            sock = self._writer.get_extra_info("socket")
            # OSError: the socket is already gone, and nothing is left to protect.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self._writer.transport.abort()
        else:
            self._writer.close()
        # The transport is closed either way; this only waits for it, briefly.
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


async def probe_backend(
    host: str, port: int, *, timeout: float, deep: bool = True
) -> RpcProbe:
    """Probe a ggml RPC server and return what it is.

    deep=False connects and closes without sending a byte: online (the server took
    the connection and closed it: it is free), busy (it left the connection waiting
    in its queue: it is serving another client) or offline.
    deep=True also opens a protocol session (HELLO, device count, device memory),
    falling back through the older generations; timeout bounds the whole probe,
    waiting for another session of this backend included.

    A port that accepts and never answers (the server is attached to another client)
    is "busy". A server of another protocol that also waits silently for more bytes,
    as line-based HTTP servers do, cannot be told apart from that and is "busy" too;
    one that answers or closes on every generation is "incompatible".
    """
    deadline = time.monotonic() + timeout
    if not deep:
        return await _shallow_probe(host, port, deadline, timeout)

    lock = _session_lock(host, port)
    if lock.locked():
        try:
            await asyncio.wait_for(lock.acquire(), _remaining(deadline))
        except TimeoutError:
            return RpcProbe(
                "busy", error="another probe of this backend is still in its session"
            )
    else:
        await lock.acquire()  # free: taken at once, without yielding
    try:
        return await _deep_probe(host, port, deadline, timeout)
    finally:
        lock.release()


async def _shallow_probe(
    host: str, port: int, deadline: float, timeout: float
) -> RpcProbe:
    try:
        session, latency_ms = await _Session.open(host, port, deadline)
    except (OSError, TimeoutError) as exc:
        return _offline(exc, timeout)
    try:
        taken = await session.hang_up(deadline)
    except ConnectionResetError:
        return RpcProbe(
            "offline",
            latency_ms=latency_ms,
            error="connection reset before the server took it: the server went away",
        )
    except OSError as exc:
        return _offline(exc, timeout, latency_ms)
    finally:
        await session.close()
    if not taken:
        return RpcProbe(
            "busy",
            latency_ms=latency_ms,
            error=f"connected, but the server did not take the connection within "
            f"{timeout:.3g} s: it is serving another client",
        )
    return RpcProbe("online", latency_ms=latency_ms)


async def _deep_probe(
    host: str, port: int, deadline: float, timeout: float
) -> RpcProbe:
    latency_ms: float | None = None
    rejected_by: list[str] = []
    for name, attempt in _GENERATIONS:
        try:
            session, connect_ms = await _Session.open(host, port, deadline)
        except (OSError, TimeoutError) as exc:
            return _offline(exc, timeout, latency_ms)
        if latency_ms is None:
            latency_ms = connect_ms
        try:
            protocol, devices = await attempt(session, deadline)
        except _Rejected:
            rejected_by.append(name)
            continue
        except _NoReply as exc:
            return RpcProbe(
                "busy",
                latency_ms=latency_ms,
                error=str(exc)
                or f"connected, but no reply within {timeout:g} s: "
                "the server is serving another client",
            )
        except _Incompatible as exc:
            return RpcProbe("incompatible", latency_ms=latency_ms, error=str(exc))
        finally:
            await session.close()
        return RpcProbe(
            "online", latency_ms=latency_ms, protocol=protocol, devices=devices
        )
    return RpcProbe(
        "incompatible",
        latency_ms=latency_ms,
        error="closed the connection on every protocol generation tried ("
        + ", ".join(rejected_by)
        + "): not a ggml RPC server, or a newer protocol than this client knows",
    )


async def _hello_v4(
    session: _Session, deadline: float
) -> tuple[str, tuple[RpcDevice, ...]]:
    reply = await session.request(
        CMD_HELLO, bytes(CONN_CAPS_SIZE), HELLO_REPLY_SIZE, deadline
    )
    return await _after_hello(session, reply[0], reply[1], reply[2], deadline)


async def _hello_v1(
    session: _Session, deadline: float
) -> tuple[str, tuple[RpcDevice, ...]]:
    reply = await session.request(CMD_HELLO, b"", OLD_HELLO_REPLY_SIZE, deadline)
    return await _after_hello(session, reply[0], reply[1], reply[2], deadline)


async def _after_hello(
    session: _Session, major: int, minor: int, patch: int, deadline: float
) -> tuple[str, tuple[RpcDevice, ...]]:
    protocol = f"{major}.{minor}.{patch}"
    try:
        if major >= 3:
            devices = await _devices_by_index(session, deadline)
        else:
            devices = (await _device_memory(session, b"", 0, deadline),)
    except _Rejected as exc:
        # It said HELLO like a ggml server, then refused a device query.
        raise _Incompatible(f"protocol {protocol}: device query refused") from exc
    except _NoReply as exc:
        raise _NoReply(
            f"protocol {protocol} answered HELLO, then no device query in time"
        ) from exc
    except _Incompatible as exc:
        raise _Incompatible(f"protocol {protocol}: {exc}") from exc
    return protocol, devices


async def _devices_by_index(
    session: _Session, deadline: float
) -> tuple[RpcDevice, ...]:
    reply = await session.request(CMD_DEVICE_COUNT, b"", 4, deadline)
    (count,) = struct.unpack("<I", reply)
    if count > MAX_DEVICES:
        raise _Incompatible(f"reports {count} devices")
    return tuple(
        [
            await _device_memory(session, struct.pack("<I", index), index, deadline)
            for index in range(count)
        ]
    )


async def _device_memory(
    session: _Session,
    payload: bytes,
    index: int,
    deadline: float,
    *,
    cmd: int = CMD_GET_DEVICE_MEMORY,
) -> RpcDevice:
    reply = await session.request(cmd, payload, DEVICE_MEMORY_REPLY_SIZE, deadline)
    free, total = struct.unpack("<QQ", reply)
    return RpcDevice(index=index, free=free, total=total)


async def _legacy(
    session: _Session, deadline: float
) -> tuple[str, tuple[RpcDevice, ...]]:
    device = await _device_memory(session, b"", 0, deadline)
    return "legacy", (device,)


async def _legacy_old(
    session: _Session, deadline: float
) -> tuple[str, tuple[RpcDevice, ...]]:
    # Tried last: to the servers of the window that numbers GET_DEVICE_MEMORY 11,
    # command 10 is GRAPH_COMPUTE. Those answered the attempt before, though.
    device = await _device_memory(
        session, b"", 0, deadline, cmd=CMD_GET_DEVICE_MEMORY_OLD
    )
    return "legacy", (device,)


# Newest first. Each older server closes on the requests of the newer ones before
# it answers anything: a HELLO of the wrong size, a HELLO at all (pre-HELLO servers
# reject command 14 as unknown), command 11 on the servers that call it
# INIT_TENSOR (which needs a payload) or do not have it.
_GENERATIONS = (
    ("protocol >= 4 HELLO", _hello_v4),
    ("protocol 1-3 HELLO", _hello_v1),
    ("pre-HELLO GET_DEVICE_MEMORY 11", _legacy),
    ("pre-HELLO GET_DEVICE_MEMORY 10", _legacy_old),
)


def _offline(
    exc: BaseException, timeout: float, latency_ms: float | None = None
) -> RpcProbe:
    return RpcProbe(
        "offline",
        latency_ms=latency_ms,
        error=_connect_error(exc, timeout),
        connect_timed_out=isinstance(exc, TimeoutError),
    )


def _connect_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        # ggml-rpc-server listens with a backlog of 1: while it serves a client,
        # Linux queues two more connections (ours count, closed with FIN or RST,
        # until it accepts them) and silently drops further SYNs.
        return (
            f"TCP connect timed out after {timeout:.3g} s: the host does not answer, "
            "or the server is serving another client with its queue of waiting "
            "connections full"
        )
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {exc}"

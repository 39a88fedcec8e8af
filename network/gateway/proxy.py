"""The gateway as an ASGI app: one request in, routed, queued, forwarded, relayed.

One `Gateway` a process serves at the root of a port of its own
(sollol_site.asgi:gateway, `serve --gateway-port`) and under /ollama/ on the
dashboard's port (mounted with that root_path).
The reply passes through as the node wrote it: status, content type, the same
bytes in the same chunks, each handed on as it arrives. A node that refuses,
resets or does not answer before its first byte is left for the next candidate
(at most SOLLOL_GATEWAY_RETRIES times), never after a byte reached the client.
A client that goes away mid-reply has its request to the node closed at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from django.conf import settings

from core import proxies, realtime, tokens
from core.addresses import is_loopback
from core.httpclient import Credential, Disconnected, HttpError
from core.lean.http import Refusal, read_body
from core.relay import Relay, Upstream
from network.choices import NODE_STREAM
from network.gateway import fanout, live, origins, records, tracing
from network.gateway.apis import (
    NOT_FOUND_PAGE,
    Endpoint,
    Kind,
    endpoint_for,
    error_body,
    model_not_found,
    stream_error,
)
from network.gateway.fleet import FleetView, probe_nodes
from network.gateway.routing import NodeView, pinned, rank
from network.gateway.shared import configured_limits
from network.gateway.usage import TAIL, Strip

logger = logging.getLogger(__name__)

# Request headers a node is sent (besides its own credential and the body's
# length); the client's Authorization is the gateway's token, never forwarded.
FORWARDED = frozenset({b"content-type", b"accept", b"user-agent", b"traceparent"})
# Reply headers the client is given; hop-by-hop and framing ones are the server's.
RELAYED = frozenset({b"content-type", b"content-length", b"retry-after"})
# What stays as it is when a decoded path is encoded again for the node.
TARGET_SAFE = "/:@!$&'()*+,;=~"
CLIENT_CLOSED = 499  # as nginx logs a request whose client went away
# What a request record (activity.models) keeps of a model's name; Ollama's own
# names are far shorter (each part of host/namespace/model:tag a few dozen).
MAX_MODEL_NAME = 200
LOAD_SAMPLE_EVERY = 0.5  # seconds


class Refused(Exception):
    """A request answered by the gateway itself, in the API's words."""

    def __init__(self, status: int, message: str, headers: list | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


@dataclass
class Exchange:
    """One request through the gateway, as it is recorded."""

    endpoint: Endpoint
    method: str
    app: str
    model: str = ""
    node: str = ""
    started: float = field(default_factory=time.monotonic)
    queue_seconds: float = 0.0
    first_token: float | None = None  # monotonic time the first body bytes came
    streamed: bool = False  # the client asked for the reply as it is generated
    status: int = 0
    error: str = ""
    attempts: int = 0
    tail: bytes = b""
    trace: tracing.Context | None = None
    started_wall_ns: int = field(default_factory=tracing.wall_ns)


class Gateway:
    """Ollama's and the OpenAI-compatible API in front of the fleet (see module)."""

    def __init__(self) -> None:
        self.fleet = FleetView(settings.SOLLOL_GATEWAY_REFRESH, prober=probe_nodes)
        # In Redis when the deployment has it (shared by every gateway process).
        self.limits = configured_limits()
        self.relay = Relay(connect_timeout=settings.SOLLOL_GATEWAY_CONNECT_TIMEOUT)
        self.recorder = records.Recorder()
        self._started: asyncio.Future | None = None
        # Said as the process starts (the gateway itself starts on its first
        # request where the server runs no start-up hook, as daphne).
        logger.info("gateway: %s", access_policy())
        self._load_task: asyncio.Task | None = None

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Read the fleet and open the relay (once; later calls wait for it)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self.relay.start()
                await self.fleet.start()
                self.recorder.start()
                live.register(self.limits.snapshot)
                self._load_task = asyncio.create_task(
                    self._publish_load(), name="gateway-load"
                )
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started = None
                raise
            self._started.set_result(None)
        else:
            await asyncio.shield(self._started)

    async def stop(self) -> None:
        if self._started is None:
            return
        live.unregister(self.limits.snapshot)
        if self._load_task is not None:
            self._load_task.cancel()
            await asyncio.gather(self._load_task, return_exceptions=True)
            self._load_task = None
        await self.limits.close()
        await self.recorder.stop()
        await self.fleet.stop()
        await self.relay.close()
        self._started = None

    async def _publish_load(self) -> None:
        """Tell the page (node samples) when a node's requests in flight or
        waiting change, at most every LOAD_SAMPLE_EVERY seconds."""
        shown: dict[str, tuple[int, int]] = {}
        while True:
            await asyncio.sleep(LOAD_SAMPLE_EVERY)
            now = self.limits.snapshot()
            changed = {
                address: now.get(address, (0, 0))
                for address in {*now, *shown}
                if now.get(address, (0, 0)) != shown.get(address, (0, 0))
            }
            if not changed:
                continue
            ids = {node.address: node.id for node in self.fleet.nodes}
            rows = [
                [ids[address], active, waiting]
                for address, (active, waiting) in sorted(changed.items())
                if ids.get(address) is not None
            ]
            if rows:
                realtime.publish_samples(
                    NODE_STREAM,
                    {
                        "nodes": rows,
                        "fields": ["id", "in_flight", "queued"],
                        "at": time.time(),
                    },
                )
            shown = {a: c for a, c in now.items() if c != (0, 0)}

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        origin = _header(scope, b"origin")
        if origin is not None:  # a web page's request (see origins.py)
            openai = path.startswith("/v1/")
            if not origins.allowed(origin, _header(scope, b"host")):
                body = error_body(
                    openai,
                    403,
                    f"origin {origin[:200]} may not use this gateway: name it in "
                    "SOLLOL_GATEWAY_ORIGINS",
                )
                await _answer(send, 403, body)
                return
            if scope["method"] == "OPTIONS":
                await _answer(send, 204, b"", extra=origins.preflight_headers(origin))
                return
            send = _with_headers(send, origins.answer_headers(origin))
        endpoint, path_model = endpoint_for(scope["method"], path)
        if endpoint is None:
            await _answer(send, 404, NOT_FOUND_PAGE, b"text/plain")
            return
        if self._started is None or not self._started.done():
            await self.start()
        try:
            self._check_access(scope)
            if endpoint.kind == Kind.LOCAL:
                await self._local(endpoint, scope, send)
            elif endpoint.kind == Kind.FLEET:
                await self._fleet_list(endpoint, send)
            else:
                await self._forward(endpoint, path, path_model, scope, receive, send)
        except Refused as exc:
            await _answer(
                send,
                exc.status,
                error_body(endpoint.openai, exc.status, exc.message),
                extra=exc.headers,
                head_only=scope["method"] == "HEAD",
            )

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # A gateway process of its own: announcements of what it records
                # go out from its loop.
                realtime.attach_running_loop()
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _check_access(self, scope: dict) -> None:
        allowed = settings.SOLLOL_GATEWAY_TOKENS
        if allowed:
            authorization = _header(scope, b"authorization")
            if not authorization:
                raise Refused(
                    401,
                    "this gateway needs Authorization: Bearer <token>",
                    [(b"www-authenticate", b"Bearer")],
                )
            if not tokens.bearer_matches(authorization, allowed):
                raise Refused(403, "the bearer token is not valid for this gateway")
            return
        if settings.SOLLOL_GATEWAY_OPEN:
            return
        if proxies.resolve(scope).get(proxies.UNTRUSTED_FORWARD):
            # A proxy we were not told of may be forwarding anyone's requests.
            raise Refused(
                403,
                "this gateway answers only on loopback until SOLLOL_GATEWAY_TOKEN "
                "(or SOLLOL_GATEWAY_OPEN=true) is set; this request came through a "
                "proxy not named in SOLLOL_TRUSTED_PROXIES",
            )
        if not is_loopback(_client(scope)):
            raise Refused(
                403,
                "this gateway answers only on loopback until SOLLOL_GATEWAY_TOKEN "
                "(or SOLLOL_GATEWAY_OPEN=true) is set",
            )

    # --------------------------------------------------------- local answers

    async def _local(self, endpoint: Endpoint, scope: dict, send: Callable) -> None:
        head_only = scope["method"] == "HEAD"
        if endpoint.name == "root":
            await _answer(
                send,
                200,
                b"Ollama is running",
                b"text/plain; charset=utf-8",
                head_only=head_only,
            )
            return
        versions = [
            n.version
            for n in self.fleet.usable()
            if n.usable and n.version and n.kind == "ollama"
        ]
        # The oldest: a client that checks for a feature must find it everywhere.
        version = min(versions, key=_version_key) if versions else "0.0.0"
        body = json.dumps({"version": version}, separators=(",", ":")).encode()
        await _answer(send, 200, body, head_only=head_only)

    async def _fleet_list(self, endpoint: Endpoint, send: Callable) -> None:
        nodes = [
            n for n in self.fleet.usable() if n.usable and n.speaks(endpoint.openai)
        ]
        body = await fanout.listing(self.relay, endpoint.name, nodes)
        await _answer(send, 200, body)

    # ------------------------------------------------------------ forwarding

    async def _forward(
        self,
        endpoint: Endpoint,
        path: str,
        path_model: str,
        scope: dict,
        receive: Callable,
        send: Callable,
    ) -> None:
        body = await _read_body(scope, receive)
        exchange = Exchange(endpoint, scope["method"], _application(scope))
        exchange.trace = tracing.context_from(_header(scope, b"traceparent"))
        strip: Strip | None = None
        if endpoint.kind in (Kind.INFER, Kind.MODEL):
            payload = _payload(body, endpoint, path_model)
            exchange.model = path_model or payload.get("model") or payload.get("name")
            exchange.streamed = endpoint.kind == Kind.INFER and _asks_stream(
                payload, endpoint
            )
            if endpoint.openai and exchange.streamed:
                options = payload.get("stream_options")
                if not (isinstance(options, dict) and options.get("include_usage")):
                    # The node is asked for usage; Strip takes it out again.
                    payload["stream_options"] = {
                        **(options if isinstance(options, dict) else {}),
                        "include_usage": True,
                    }
                    # Escaped: a lone surrogate the client sent stays what it was.
                    body = json.dumps(payload).encode()
                    strip = Strip()
        # From here on the client's going away (http.disconnect) cancels this
        # task, whether the request waits for a slot, for the node's first byte
        # (a reply that is not streamed: the whole generation) or is relayed: the
        # request to the node is then dropped with its connection.
        watch = _ClientWatch(receive)
        try:
            candidates = self._candidates(scope, endpoint, exchange.model)
            upstream, node = await self._open(candidates, path, scope, body, exchange)
            exchange.node = node.address
            try:
                await self._relay(upstream, exchange, strip, watch, send)
            finally:
                upstream.close()
                if endpoint.takes_slot:
                    self.limits.release(node.address)
        except Refused as exc:
            exchange.status, exchange.error = exc.status, exc.message
            if exc.status == 404:
                # A name no node has (a typo, or anything a client makes up)
                # is said in the error, not kept as a model of its own in the
                # totals, rollups and Prometheus series, which live on.
                exchange.model = ""
            raise
        except asyncio.CancelledError:
            if not watch.left:
                raise
            exchange.status = CLIENT_CLOSED
            exchange.error = "the client closed the connection"
            watch.current.uncancel()  # the client is gone: nothing is left to do
        finally:
            watch.stop()
            self.recorder.add(exchange)

    def _candidates(
        self, scope: dict, endpoint: Endpoint, model: str
    ) -> tuple[NodeView, ...]:
        named = _header(scope, b"x-sollol-node")
        if named:
            node = pinned(self.fleet.nodes, named)
            if node is None:
                raise Refused(400, f"no node {named[:300]} in this fleet")
            if not node.speaks(endpoint.openai):
                raise Refused(
                    400,
                    f"node {node.address} is a {node.kind} server: it answers the "
                    "OpenAI-compatible API (/v1/...), not Ollama's",
                )
            if not node.usable:
                raise Refused(
                    503,
                    f"node {node.address} is {node.status}",
                    [(b"retry-after", b"5")],
                )
            return (node,)
        if endpoint.kind == Kind.PINNED:
            raise Refused(
                400,
                f"{endpoint.name} changes one node: name it with the header "
                "X-SOLLOL-Node: host:port",
            )
        speaking = [n for n in self.fleet.usable() if n.speaks(endpoint.openai)]
        choice = rank(speaking, model, self.limits.load())
        if not choice.known:
            raise Refused(404, model_not_found(model))
        if not choice.nodes:
            raise Refused(503, choice.reason, [(b"retry-after", b"5")])
        return choice.nodes

    async def _open(
        self,
        candidates: tuple[NodeView, ...],
        path: str,
        scope: dict,
        body: bytes,
        exchange: Exchange,
    ) -> tuple[Upstream, NodeView]:
        """Return the first candidate's reply head, failing over before any byte."""
        headers = _forwarded_headers(scope)
        if exchange.trace is not None:
            headers["traceparent"] = exchange.trace.traceparent()
        # The path as the client sent it: the server decoded it, the node is
        # sent it encoded again (a %0D%0A in it stays three characters).
        query = scope.get("query_string", b"").decode("latin-1")
        target = quote(path, safe=TARGET_SAFE) + (f"?{query}" if query else "")
        tries = candidates[: settings.SOLLOL_GATEWAY_RETRIES + 1]
        deadline = time.monotonic() + settings.SOLLOL_GATEWAY_QUEUE_TIMEOUT
        last_error = ""
        limited = exchange.endpoint.takes_slot

        def release(node: NodeView) -> None:
            if limited:
                self.limits.release(node.address)

        for node in tries:
            queued = time.monotonic()
            got = not limited or await self.limits.acquire(
                node.address, max(0.0, deadline - queued)
            )
            exchange.queue_seconds += time.monotonic() - queued
            if not got:
                exchange.node = node.address
                raise Refused(
                    503,
                    f"every node for this request stayed busy for "
                    f"{settings.SOLLOL_GATEWAY_QUEUE_TIMEOUT:g}s; try again shortly",
                    [(b"retry-after", b"1")],
                )
            exchange.attempts += 1
            sent = dict(headers)
            if node.credential:
                credential = Credential.from_stored(node.credential)
                if credential is not None:
                    sent["Authorization"] = credential.header()
            try:
                upstream = await self.relay.open(
                    scope["method"],
                    node.url,
                    target,
                    body=body,
                    headers=sent,
                    first_byte_timeout=settings.SOLLOL_GATEWAY_FIRST_BYTE_TIMEOUT,
                )
            except ValueError as exc:  # what the client sent cannot be sent on
                release(node)
                raise Refused(400, f"the request cannot be forwarded: {exc}") from None
            except HttpError as exc:
                release(node)
                self.fleet.suspect(node)
                last_error = f"{node.address}: {exc}"
                logger.info("gateway: %s; trying the next node", last_error)
                continue
            except asyncio.CancelledError:  # the client left while it waited
                release(node)
                raise
            return upstream, node
        exchange.node = tries[-1].address if tries else ""
        raise Refused(502, f"no node answered: {last_error}")

    async def _relay(
        self,
        upstream: Upstream,
        exchange: Exchange,
        strip: Strip | None,
        watch: _ClientWatch,
        send: Callable,
    ) -> None:
        exchange.status = upstream.status
        chunked = upstream.chunked
        headers = [
            (name, value)
            for name, value in upstream.headers
            if name in RELAYED and not (strip and name == b"content-length")
        ]
        recent: deque[bytes] = deque(maxlen=4)  # the reply's end: what it says it did
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": headers,
                }
            )
            pending = b""
            async for data, end in upstream.chunks():
                recent.append(data)
                if exchange.first_token is None and data:
                    exchange.first_token = time.monotonic()
                if chunked:
                    # A chunk is handed on whole, as the node wrote it.
                    if not end:
                        pending += data
                        continue
                    if pending:
                        data, pending = pending + data, b""
                if strip is not None:
                    data = strip.chunk(data)
                if data:
                    await send(
                        {"type": "http.response.body", "body": data, "more_body": True}
                    )
            watch.stop()
            await send({"type": "http.response.body", "body": pending})
        except Disconnected as exc:
            watch.stop()
            exchange.status = 502
            exchange.error = f"{exchange.node}: {exc}"
            if not chunked:
                raise  # a reply of a known length cannot be finished: drop it
            await send(
                {
                    "type": "http.response.body",
                    "body": stream_error(exchange.endpoint.openai, exchange.error),
                }
            )
        finally:
            exchange.tail = b"".join(recent)[-TAIL:]


class _ClientWatch:
    """Cancel the current task when the client goes away (http.disconnect)."""

    def __init__(self, receive: Callable) -> None:
        current = asyncio.current_task()
        assert current is not None
        self.current = current
        self._watcher = asyncio.ensure_future(receive())
        self._watcher.add_done_callback(self._seen)

    def _seen(self, done: asyncio.Future) -> None:
        if self.left:
            self.current.cancel()

    @property
    def left(self) -> bool:
        """Whether the client went away."""
        done = self._watcher
        return (
            done.done()
            and not done.cancelled()
            and done.exception() is None
            and done.result()["type"] == "http.disconnect"
        )

    def stop(self) -> None:
        """Stop watching (the reply is complete, or ends here)."""
        self._watcher.remove_done_callback(self._seen)
        if not self._watcher.done():
            self._watcher.cancel()


def _with_headers(send: Callable, headers: list[tuple[bytes, bytes]]) -> Callable:
    """send, adding headers to the answer's head."""

    async def sending(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return sending


def access_policy() -> str:
    """Say who may use the gateway, for the start-up log."""
    if settings.SOLLOL_GATEWAY_TOKENS:
        return "clients need Authorization: Bearer <SOLLOL_GATEWAY_TOKEN>"
    if settings.SOLLOL_GATEWAY_OPEN:
        return "open to every client (SOLLOL_GATEWAY_OPEN=true, no token)"
    return "answers loopback clients only: set SOLLOL_GATEWAY_TOKEN to let others in"


def _client(scope: dict) -> str:
    """The client's address: behind a proxy the operator trusts
    (SOLLOL_TRUSTED_PROXIES), the one it saw; otherwise the connection's
    (core.proxies)."""
    return (proxies.resolve(scope).get("client") or ("",))[0]


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _application(scope: dict) -> str:
    named = _header(scope, b"x-sollol-app")
    if named and named.strip():
        return named.strip()[:128]
    authorization = _header(scope, b"authorization")
    if authorization and settings.SOLLOL_GATEWAY_TOKENS:
        return "token:" + tokens.fingerprint(authorization)
    return _client(scope)


def _forwarded_headers(scope: dict) -> dict[str, str]:
    return {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in scope["headers"]
        if key in FORWARDED
    }


async def _read_body(scope: dict, receive: Callable) -> bytes:
    try:
        return await read_body(scope, receive, settings.SOLLOL_GATEWAY_MAX_BODY)
    except Refusal as refusal:  # said again in the API's shape
        raise Refused(refusal.status, refusal.message) from None


def _payload(body: bytes, endpoint: Endpoint, path_model: str) -> dict:
    if path_model:  # GET /v1/models/{model}: no body
        _check_model(path_model)
        return {}
    if not body.strip():
        raise Refused(400, "missing request body")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not JSON: {exc}"[:300]) from None
    except RecursionError:
        raise Refused(
            400, "the body is not JSON this gateway reads: nested too deep"
        ) from None
    if not isinstance(payload, dict):
        raise Refused(400, "the body must be a JSON object")
    model = payload.get("model") or (
        payload.get("name") if endpoint.name == "show" else None
    )
    if not isinstance(model, str) or not model.strip():
        raise Refused(400, "model is required")
    _check_model(model)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise Refused(400, "stream must be true or false")
    return payload


def _check_model(model: str) -> None:
    """Refuse a model name no model has (it would also not fit its records)."""
    if len(model) > MAX_MODEL_NAME:
        raise Refused(400, f"the model name is longer than {MAX_MODEL_NAME} characters")
    if not model.isprintable():  # control characters, a lone surrogate
        raise Refused(400, "the model name has characters no model name has")


def _asks_stream(payload: dict, endpoint: Endpoint) -> bool:
    stream = payload.get("stream")
    return endpoint.streams_by_default if stream is None else stream


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("-")[0].split("."):
        parts.append(int(part) if part.isdigit() else 0)
    return tuple(parts)


async def _answer(
    send: Callable,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json; charset=utf-8",
    *,
    extra: list | None = None,
    head_only: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})

"""Distributed tracing for applications: spans to the dashboard, W3C traceparent out.

    tracer = Tracer("http://localhost:8080", service="my-router")
    with tracer.trace("generate", model="llama3.2:3b") as span:
        with tracer.trace("pick-node") as inner:  # a child of "generate"
            inner.set_attribute("node", "127.0.0.2:11434")
        requests.post(url, headers=tracer.inject({}))  # carries traceparent

A finished span is only queued (sollol.batching.BatchSender sends batches to
POST /api/traces from a daemon thread), so tracing never blocks the application and
never fails it when the dashboard is away. The current span lives in a context
variable: nesting follows the code's own structure in threads and asyncio tasks
alike, and spans of several Tracers nest into one another.

This module needs only the standard library and requests (no Django, no
OpenTelemetry); applications that already use an OpenTelemetry SDK can export to
the dashboard's /v1/traces instead.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import random
import re
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import requests

from sollol.batching import BatchSender

TRACEPARENT = "traceparent"
# version-traceid-parentid-flags (https://www.w3.org/TR/trace-context/)
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?=-|$)"
)

_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "sollol_current_span", default=None
)


def _new_id(bits: int) -> str:
    # random, not secrets: ids must be unique, not unguessable, and this is cheap.
    while True:
        value = random.getrandbits(bits)
        if value:
            return f"{value:0{bits // 4}x}"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """Return (trace_id, parent span_id) of a W3C traceparent header, or None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, _flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    # Version 00 is exactly 55 characters; later versions may append fields.
    if version == "00" and len(value.strip()) != 55:
        return None
    return trace_id, span_id


class Span:
    """One operation being timed; finished and queued when its `with` block ends."""

    def __init__(
        self,
        name: str,
        *,
        service: str,
        trace_id: str,
        parent_span_id: str | None,
        kind: str,
        attributes: dict[str, Any],
    ) -> None:
        self.name = name
        self.service = service
        self.trace_id = trace_id
        self.span_id = _new_id(64)
        self.parent_span_id = parent_span_id
        self.kind = kind
        self.attributes = attributes
        self.events: list[dict[str, Any]] = []
        self.status = "unset"
        self.status_message = ""
        self.start = time.time()
        self.end: float | None = None

    @property
    def traceparent(self) -> str:
        """Return the W3C traceparent that makes a callee's spans children of this."""
        return f"00-{self.trace_id}-{self.span_id}-01"

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, status: str, message: str = "") -> None:
        """Set "ok", "error" or "unset", with an optional message."""
        if status not in ("ok", "error", "unset"):
            raise ValueError('status must be "ok", "error" or "unset"')
        self.status = status
        self.status_message = message

    def add_event(self, name: str, **attributes: Any) -> None:
        self.events.append(
            {"name": name, "timestamp": time.time(), "attributes": attributes}
        )

    def record_exception(self, error: BaseException) -> None:
        """Mark the span failed by error (as OpenTelemetry records exceptions)."""
        message = f"{type(error).__name__}: {error}"
        self.set_status("error", message)
        self.add_event(
            "exception",
            **{
                "exception.type": type(error).__qualname__,
                "exception.message": str(error),
            },
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the span as POST /api/traces takes it."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "service": self.service,
            "kind": self.kind,
            "start": self.start,
            "end": self.end if self.end is not None else time.time(),
            "status": self.status,
            "status_message": self.status_message,
            "attributes": _json_safe(self.attributes),
            "events": _json_safe(self.events),
        }


def _json_safe(value: Any) -> Any:
    """Return value with NaN and infinities as strings.

    Strict JSON has no NaN, and the sender drops a batch it cannot encode: one
    float("nan") attribute must not cost the other spans sent with it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def current_span() -> Span | None:
    """Return the span the calling code runs in, if any."""
    return _current.get()


def inject(headers: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Add traceparent for the current span to headers (a new dict if None).

    Outside any span the headers are returned unchanged.
    """
    if headers is None:
        headers = {}
    span = _current.get()
    if span is not None:
        headers[TRACEPARENT] = span.traceparent
    return headers


class Tracer:
    """Make spans for one service and send them to the dashboard in the background."""

    def __init__(
        self,
        dashboard_url: str,
        service: str,
        headers: dict[str, str] | None = None,
        *,
        api_token: str | None = None,
        interval: float = 1.0,
        max_queue: int = 10_000,
        timeout: float = 2.0,
    ) -> None:
        self.service = service
        self.dashboard_url = dashboard_url.rstrip("/")
        headers = dict(headers or {})
        if api_token is None:
            api_token = os.environ.get("SOLLOL_API_TOKEN") or None
        if api_token and not any(key.lower() == "authorization" for key in headers):
            headers["Authorization"] = f"Bearer {api_token}"
        self._sender = BatchSender(
            f"{self.dashboard_url}/api/traces",
            headers=headers,
            encode=lambda spans: {"spans": spans},
            name="traces",
            max_queue=max_queue,
            interval=interval,
            timeout=timeout,
        )

    @contextmanager
    def trace(
        self, name: str, *, traceparent: str | None = None, **attributes: Any
    ) -> Iterator[Span]:
        """Time the block as a span, a child of the current span if there is one.

        traceparent continues a trace another process started (the W3C header of
        an incoming request); an invalid one is ignored and a new trace begins.
        An exception escaping the block marks the span failed and propagates.
        """
        remote = parse_traceparent(traceparent)
        parent = _current.get()
        if remote is not None:
            trace_id, parent_span_id = remote
            kind = "server"  # the receiving side of someone else's call
        elif parent is not None:
            trace_id, parent_span_id, kind = parent.trace_id, parent.span_id, "internal"
        else:
            trace_id, parent_span_id, kind = _new_id(128), None, "internal"
        span = Span(
            name,
            service=self.service,
            trace_id=trace_id,
            parent_span_id=parent_span_id,
            kind=kind,
            attributes=attributes,
        )
        token = _current.set(span)
        try:
            yield span
        except BaseException as error:
            span.record_exception(error)
            raise
        finally:
            span.end = time.time()
            _current.reset(token)
            self._sender.put(span.as_dict())

    def inject(
        self, headers: MutableMapping[str, str] | None = None
    ) -> MutableMapping[str, str]:
        """Add traceparent for the current span to headers (see inject())."""
        return inject(headers)

    @property
    def stats(self) -> dict[str, int]:
        """Return how many spans were sent, dropped, rejected and are still queued."""
        return self._sender.stats

    def flush(self, timeout: float = 5.0) -> bool:
        """Send every finished span now; return whether all left within timeout."""
        return self._sender.flush(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (waiting at most timeout) and stop the sender."""
        self._sender.close(timeout)


# --- requests instrumentation -------------------------------------------------------

_instrument_lock = threading.Lock()
_original_request = None


def instrument_requests() -> None:
    """Make every `requests` call made inside a span carry its traceparent.

    Patches requests.Session.request, which requests.get/post/... use too. A
    traceparent the caller set explicitly is kept. Calling it twice is harmless;
    uninstrument_requests() undoes it.
    """
    global _original_request
    with _instrument_lock:
        if _original_request is not None:
            return
        original = requests.Session.request

        @functools.wraps(original)
        def request(session, method, url, *args, **kwargs):
            span = _current.get()
            # Headers passed positionally (the 3rd argument after url) are rare
            # enough to leave alone rather than guess at.
            if span is not None and len(args) < 3:
                headers = kwargs.get("headers") or {}
                if not any(key.lower() == TRACEPARENT for key in headers):
                    kwargs["headers"] = {**headers, TRACEPARENT: span.traceparent}
            return original(session, method, url, *args, **kwargs)

        _original_request = original
        requests.Session.request = request


def uninstrument_requests() -> None:
    """Undo instrument_requests()."""
    global _original_request
    with _instrument_lock:
        if _original_request is None:
            return
        requests.Session.request = _original_request
        _original_request = None


# --- httpx instrumentation (ollama-python and most async clients use httpx) --------

_original_httpx: tuple[Any, Any] | None = None


def _stamp(headers: MutableMapping[str, str]) -> None:
    span = _current.get()
    if span is not None and TRACEPARENT not in headers:  # httpx: any case
        headers[TRACEPARENT] = span.traceparent


def instrument_httpx() -> bool:
    """Make every httpx call made inside a span carry its traceparent.

    Patches httpx.Client.send and httpx.AsyncClient.send, which every request of
    either goes through (ollama.Client and ollama.AsyncClient among them); a
    traceparent the caller set is kept. Return False when httpx is not installed.
    """
    global _original_httpx
    try:
        import httpx
    except ImportError:
        return False
    with _instrument_lock:
        if _original_httpx is not None:
            return True
        sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

        @functools.wraps(sync_send)
        def send(client, request, *args, **kwargs):
            _stamp(request.headers)
            return sync_send(client, request, *args, **kwargs)

        @functools.wraps(async_send)
        async def asend(client, request, *args, **kwargs):
            _stamp(request.headers)
            return await async_send(client, request, *args, **kwargs)

        _original_httpx = (sync_send, async_send)
        httpx.Client.send, httpx.AsyncClient.send = send, asend
    return True


def uninstrument_httpx() -> None:
    """Undo instrument_httpx()."""
    global _original_httpx
    with _instrument_lock:
        if _original_httpx is None:
            return
        import httpx

        httpx.Client.send, httpx.AsyncClient.send = _original_httpx
        _original_httpx = None


def instrument() -> None:
    """Propagate traceparent through requests and (when installed) httpx calls."""
    if _original_request is None:
        instrument_requests()
    if _original_httpx is None:
        instrument_httpx()


def uninstrument() -> None:
    """Undo instrument()."""
    uninstrument_requests()
    uninstrument_httpx()

"""A span per gateway request, in W3C Trace Context: a child of the client's
`traceparent` when it sent one, the parent of what the node does (the node gets
the gateway's own `traceparent`).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from activity.choices import SpanKind, SpanStatus
from activity.traces import SpanIn

SERVICE = "sollol-gateway"
# version-trace_id-parent_id-flags; an all-zero id is invalid (W3C Trace Context).
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True)
class Context:
    trace_id: str
    span_id: str  # the gateway's span
    parent_span_id: str  # the client's, or "" for a trace the gateway began
    flags: str = "01"

    def traceparent(self) -> str:
        """Return the header the node is sent: the gateway's span is its parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def context_from(header: str | None) -> Context:
    """Continue the client's trace when its traceparent is valid; else begin one."""
    match = _TRACEPARENT.fullmatch((header or "").strip().lower())
    if match and set(match[1]) != {"0"} and set(match[2]) != {"0"}:
        return Context(match[1], _new_span_id(), match[2], match[3])
    return Context(secrets.token_hex(16), _new_span_id(), "")


def _new_span_id() -> str:
    while True:
        span_id = secrets.token_hex(8)
        if span_id != "0" * 16:
            return span_id


def span_of(
    context: Context,
    *,
    name: str,
    started_wall_ns: int,
    duration_s: float,
    ok: bool,
    error: str,
    attributes: dict,
) -> SpanIn:
    """Return the gateway's span of one request."""
    return SpanIn(
        trace_id=context.trace_id,
        span_id=context.span_id,
        parent_span_id=context.parent_span_id,
        name=name[:500],
        service=SERVICE,
        kind=SpanKind.SERVER,
        start_ns=started_wall_ns,
        end_ns=started_wall_ns + max(0, int(duration_s * 1e9)),
        status=SpanStatus.OK if ok else SpanStatus.ERROR,
        status_message=error[:4000],
        attributes={k: v for k, v in attributes.items() if v is not None and v != ""},
    )


def wall_ns() -> int:
    return time.time_ns()

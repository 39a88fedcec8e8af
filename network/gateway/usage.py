"""What a reply says about the work done: token counts and durations, from its end.

Ollama puts its metrics last in the final object of a reply (`prompt_eval_count`,
`eval_count`, `eval_duration`, `load_duration`, ... in nanoseconds), and the
OpenAI-compatible API its `usage` object last, so the end of a reply is all that
is read: a few kilobytes, however long the stream or large the embeddings.

A streamed /v1 request whose client did not ask for usage is sent on with
`stream_options.include_usage`; `Strip` takes the extra out again, byte for byte,
so the client receives exactly what the node would have sent it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TAIL = 4096  # bytes kept of a reply's end

_INT = r'"{}"\s*:\s*(\d+)'
_FIELDS = {
    name: re.compile(_INT.format(name).encode())
    for name in (
        "prompt_eval_count",
        "eval_count",
        "eval_duration",
        "load_duration",
        "prompt_eval_duration",
        "total_duration",
        "prompt_tokens",
        "completion_tokens",
    )
}
_DONE_REASON = re.compile(rb'"(?:done_reason|finish_reason)"\s*:\s*"([a-z_]+)"')


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    eval_seconds: float | None = None  # time spent generating, from the node
    load_seconds: float | None = None
    done_reason: str = ""

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or not self.eval_seconds:
            return None
        return self.completion_tokens / self.eval_seconds


def _last(pattern: re.Pattern, tail: bytes) -> int | None:
    found = pattern.findall(tail)
    return int(found[-1]) if found else None


def read_usage(tail: bytes, *, openai: bool) -> Usage:
    """Return what the end of a reply says about the work done."""
    if openai:
        usage = Usage(
            prompt_tokens=_last(_FIELDS["prompt_tokens"], tail),
            completion_tokens=_last(_FIELDS["completion_tokens"], tail),
        )
    else:
        eval_ns = _last(_FIELDS["eval_duration"], tail)
        load_ns = _last(_FIELDS["load_duration"], tail)
        usage = Usage(
            prompt_tokens=_last(_FIELDS["prompt_eval_count"], tail),
            completion_tokens=_last(_FIELDS["eval_count"], tail),
            eval_seconds=eval_ns / 1e9 if eval_ns else None,
            load_seconds=load_ns / 1e9 if load_ns is not None else None,
        )
    reasons = _DONE_REASON.findall(tail)
    if reasons:
        usage.done_reason = reasons[-1].decode()
    return usage


# Ollama's CompleteWriter puts a zero usage on every streamed chunk when usage was
# asked for; its ChatWriter and CompleteWriter then send one chunk of usage alone.
_ZERO_USAGE = b',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}'
_USAGE_ONLY = re.compile(rb'^data: \{.*"choices":\[\].*"usage":\{[^{}]*\}\}$', re.S)


class Strip:
    """Take out of an SSE stream the usage the client did not ask for."""

    def __init__(self) -> None:
        self.usage_event = b""  # the event taken out, to read the usage from

    def chunk(self, data: bytes) -> bytes:
        """Return a chunk of SSE events as the client would have had it without
        include_usage (Go writes the last events, finish, usage and [DONE], in
        one chunk)."""
        if b'"usage":' not in data:
            return data
        kept = []
        for event in data.split(b"\n\n")[:-1]:  # each event ends with a blank line
            if _USAGE_ONLY.match(event):
                self.usage_event = event
                continue
            kept.append(event.replace(_ZERO_USAGE, b"") + b"\n\n")
        rest = data[data.rfind(b"\n\n") + 2 :] if b"\n\n" in data else data
        return b"".join(kept) + rest

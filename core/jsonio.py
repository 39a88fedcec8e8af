"""Strict JSON in, for every lane: what is accepted can be stored on any backend."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any


class PayloadError(ValueError):
    """A request body or field the dashboard refuses; its text goes to the client."""


# Beyond this no column or counter of ours can hold an integer (OTLP's unsigned
# fixed64 nanoseconds are the largest that arrive); larger ones overflowed float()
# deep inside a parser, as a 500.
INT_LIMIT = 2**64


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e400: valid JSON, no float can hold it
        raise PayloadError(f"the number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 21 or abs(value := int(text)) >= INT_LIMIT:
        raise PayloadError(f"the integer {text[:40]}… is out of range")
    return value


def parse(text: str | bytes) -> Any:
    """Parse JSON text whose numbers all fit a float or an int64 (either sign).

    NaN, Infinity, overflowing floats and giant integers raise PayloadError, a
    ValueError; so does invalid JSON.
    """
    return json.loads(
        text,
        parse_constant=_reject_constant,
        parse_float=_finite_float,
        parse_int=_bounded_int,
    )


def loads(body: bytes) -> Any:
    """Parse a request body, refusing NaN/Infinity, bad UTF-8 and absurd nesting."""
    try:
        return parse(body.decode("utf-8"))
    except PayloadError:
        raise
    except UnicodeDecodeError:
        raise PayloadError("request body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"request body is not valid JSON: {exc}") from None


def check_text(value: str, field: str) -> str:
    """Return value if PostgreSQL and SQLite can both store it as text."""
    if "\x00" in value:
        raise PayloadError(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{field} contains an unpaired surrogate") from None
    return value


def storable(value: str) -> str:
    """Return value with NUL and lone surrogates replaced by U+FFFD.

    For text the dashboard did not choose to refuse (what a probed node answers):
    JSON may carry "\\u0000" and "\\ud800", and PostgreSQL stores neither.
    """
    if "\x00" not in value:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
    return "".join(
        "\ufffd" if char == "\x00" or "\ud800" <= char <= "\udfff" else char
        for char in value
    )


def check_document(value: Any, field: str, *, max_depth: int) -> Any:
    """Return a JSON value if every string in it is storable and it is not too deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise PayloadError(f"{field} is nested more than {max_depth} levels deep")
        if isinstance(item, str):
            check_text(item, field)
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(key, field)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return value


def epoch(value: dt.datetime | None) -> float | None:
    """Return an instant as the API sends it: Unix seconds (None stays None)."""
    return None if value is None else value.timestamp()


def rounded(value: float | None) -> float | None:
    """Return a measurement as the API sends it: to 0.01 (None stays None)."""
    return None if value is None else round(value, 2)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def go_json(payload: Any) -> bytes:
    """Return payload as Go's encoding/json writes it: compact, HTML-escaped
    (Ollama's answers, which the gateway says again in their own words)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e")
        text = text.replace("&", "\\u0026")
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode()

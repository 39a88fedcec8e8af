"""Strict JSON in, for every lane: what is accepted can be stored on any backend."""

from __future__ import annotations

import json
from typing import Any


class PayloadError(ValueError):
    """A request body or field the dashboard refuses; its text goes to the client."""


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not valid JSON")


def loads(body: bytes) -> Any:
    """Parse a request body, refusing NaN/Infinity, bad UTF-8 and absurd nesting."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
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


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

"""One set of validators for what arrives from the network: text, numbers, times.

Each returns the value as the dashboard stores it, or raises jsonio.PayloadError
with words for the client ("latency_ms must be ..."). `field` names the value as
the client wrote it, with where it stood in the body when that helps (e.g.
"requests[3].model").
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

from core.jsonio import PayloadError, check_text

INT32_MAX = 2**31 - 1


def text(
    value: Any,
    field: str,
    *,
    max_length: int,
    default: str | None = "",
    longer: Literal["refuse", "ellipsis", "cut"] = "refuse",
    strip: bool = False,
) -> str | None:
    """Return value as storable text of at most max_length characters.

    None gives default. Longer text is refused, or shortened to fit (a log message
    or a span name that runs on is not wrong): with a trailing ellipsis, or cut.
    """
    if value is None:
        return default
    if not isinstance(value, str):
        raise PayloadError(f"{field} must be a string")
    value = check_text(value.strip() if strip else value, field)
    if len(value) > max_length:
        if longer == "refuse":
            raise PayloadError(f"{field} is longer than {max_length} characters")
        if longer == "cut":
            return value[:max_length]
        value = value[: max_length - 1] + "…"
    return value


def count(value: Any, field: str, *, most: int = INT32_MAX) -> int | None:
    """Return a JSON whole number from 0 to most; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{field} must be a whole number ≥ 0")
    if value > most:
        raise PayloadError(f"{field} is implausibly large")
    return value


def timestamp(value: Any, field: str, *, iso: bool = True) -> dt.datetime | None:
    """Return an aware UTC instant from Unix seconds or (with iso) ISO 8601.

    None stays None ("when it arrived"). An ISO time without an offset is UTC.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise PayloadError(f"{field} must be finite")
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise PayloadError(f"{field} is out of range") from None
    if iso and isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PayloadError(f"{field} is not ISO 8601") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=dt.UTC)
        try:  # 0001-01-01T00:00+14:00 is a valid string and no storable instant
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise PayloadError(f"{field} is out of range") from None
    if iso:
        raise PayloadError(f"{field} must be Unix seconds or ISO 8601")
    raise PayloadError(f"{field} must be Unix seconds")


def query_int(raw: str | None, name: str, *, default: Any, low: int, high: int) -> Any:
    """Return the query parameter name as a whole number from low to high.

    Absent or empty gives default.
    """
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PayloadError(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise PayloadError(f"{name} must be between {low} and {high}")
    return value


def query_number(
    raw: str | None, name: str, *, default: Any, low: float, high: float
) -> Any:
    """Return the query parameter name as a number from low to high (not NaN)."""
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise PayloadError(f"{name} must be a number") from None
    if not low <= value <= high:  # also refuses NaN
        raise PayloadError(f"{name} must be between {low:g} and {high:g}")
    return value

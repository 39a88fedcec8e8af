"""The live streams: each WebSocket path serves one, and every event names its own.

The event log knows no domain. Each app registers the streams it writes to when
its models are imported (NetBox registers its event types the same way), and the
log's `stream` column takes its choices from here.
"""

from __future__ import annotations

_labels: dict[str, str] = {}


def register(name: str, label: str) -> str:
    """Make a stream known under name (at most 32 characters); return the name."""
    if len(name) > 32:
        raise ValueError(f"a stream name has at most 32 characters: {name!r}")
    if _labels.setdefault(name, label) != label:
        raise ValueError(f"stream {name!r} is registered already as {_labels[name]!r}")
    return name


def choices() -> list[tuple[str, str]]:
    """Return (name, label) of every registered stream, for the log's column."""
    return list(_labels.items())


# The activity features' own streams.
MODEL_ACTIVITY = register("ollama_activity", "Model activity")
LOGS = register("logs", "Logs")

"""The Prometheus text format (version 0.0.4), written directly.

At 1,000 nodes and 1,300 router histograms (40,000 samples), building
prometheus_client's Sample objects and formatting them with generate_latest took
265 ms a scrape, writing the lines here 34 ms (bench/RESULTS.md). Tests read the
output with prometheus_client's parser.
"""

from __future__ import annotations

import math
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Family:
    """One metric family: its HELP and TYPE lines, then one line per sample."""

    __slots__ = ("name", "lines")

    def __init__(self, name: str, type: str, help: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {help}\n# TYPE {name} {type}\n"]

    def add(self, labels: str, value: float, suffix: str = "") -> None:
        """Add a sample; labels is preformatted, e.g. ``node="a:1",model="m"``."""
        self.lines.append(f"{self.name}{suffix}{{{labels}}} {number(value)}\n")


def escape(value: str) -> str:
    """Escape a label value: backslash, double quote and newline (text format)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value: float) -> str:
    """Write a sample value as the text format does (NaN, +Inf, -Inf)."""
    if type(value) is int:
        return str(value)
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def integer(value: Any) -> int | None:
    """Return value if it is a real integer (nodes report what they like), else None."""
    return value if type(value) is int else None

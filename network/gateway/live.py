"""How busy each node is now, as the gateways see it: requests in flight and waiting.

A gateway registers where its counts are (its own slots in embedded mode; Redis,
shared by every gateway process, in production), and the API, the page's samples
and /api/prometheus read them here.
"""

from __future__ import annotations

from collections.abc import Callable

Load = dict[str, tuple[int, int]]  # node address -> (in flight, waiting)

_sources: list[Callable[[], Load]] = []


def register(source: Callable[[], Load]) -> None:
    """Add a source of counts (called as the gateway is made)."""
    if source not in _sources:
        _sources.append(source)


def unregister(source: Callable[[], Load]) -> None:
    if source in _sources:
        _sources.remove(source)


def node_load() -> Load:
    """Return (in flight, waiting) by node address, summed over the sources."""
    total: Load = {}
    for source in _sources:
        for address, (active, waiting) in source().items():
            had = total.get(address, (0, 0))
            total[address] = (had[0] + active, had[1] + waiting)
    return total

"""How busy each node is now, as the gateways see it: requests in flight and waiting.

A gateway registers where its counts are (its own slots in embedded mode; Redis,
shared by every gateway process, in production), and the API, the page's samples
and /api/prometheus read them here. Every reader of the same Redis keys (a
gateway's own cache, the web process's `shared.SharedReader`) names them by its
`live_key`, and those count once.
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
    read = []
    for source in _sources:
        # A bound method's object may say what it reads; else each source is its own.
        store = getattr(getattr(source, "__self__", None), "live_key", None) or source
        if store in read:
            continue  # another view of the same Redis keys: counted already
        read.append(store)
        for address, (active, waiting) in source().items():
            had = total.get(address, (0, 0))
            total[address] = (had[0] + active, had[1] + waiting)
    return total

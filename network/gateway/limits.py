"""Per-node concurrency limits with a queue: at most N requests in flight a node.

A request that finds its node full waits in line (first come, first served) for
at most a timeout. This is the in-process state of one gateway (embedded mode);
several gateway processes share theirs through Redis (shared.py, the same
interface) so that a node's limit holds for all of them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Node:
    active: int = 0
    waiters: deque[asyncio.Future] = field(default_factory=deque)


class Limits:
    """In-memory slots and queues, one per node address."""

    def __init__(self, per_node: int) -> None:
        if per_node < 1:
            raise ValueError("a node takes at least one request at a time")
        self.per_node = per_node
        self._nodes: dict[str, _Node] = {}

    def in_flight(self, address: str) -> int:
        node = self._nodes.get(address)
        return node.active if node else 0

    def waiting(self, address: str) -> int:
        node = self._nodes.get(address)
        return len(node.waiters) if node else 0

    def load(self) -> dict[str, int]:
        """Return in flight plus waiting, by node address (routing's tie-breaker)."""
        return {a: n.active + len(n.waiters) for a, n in self._nodes.items()}

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Return (in flight, waiting) by node address, for the page and metrics."""
        return {a: (n.active, len(n.waiters)) for a, n in self._nodes.items()}

    def free(self, address: str) -> bool:
        """Return whether a request for address would start at once."""
        node = self._nodes.get(address)
        return node is None or (node.active < self.per_node and not node.waiters)

    async def acquire(self, address: str, timeout: float) -> bool:
        """Take a slot of address, waiting at most timeout; False when none came."""
        node = self._nodes.setdefault(address, _Node())
        if node.active < self.per_node and not node.waiters:
            node.active += 1
            return True
        waiter = asyncio.get_running_loop().create_future()
        node.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(waiter)
            return True
        except TimeoutError:
            if waiter.done():  # the slot came as time ran out: take it
                return True
            waiter.cancel()
            self._forget(address, node, waiter)
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(address)  # granted, but nobody will use it
            else:
                waiter.cancel()
                self._forget(address, node, waiter)
            raise

    def release(self, address: str) -> None:
        """Give a slot back: to the first in line, or free."""
        node = self._nodes.get(address)
        if node is None:
            return
        while node.waiters:
            waiter = node.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; active stays
                return
        node.active = max(0, node.active - 1)
        if node.active == 0:
            del self._nodes[address]

    async def close(self) -> None:
        """Nothing to give back: the slots end with the process."""

    def _forget(self, address: str, node: _Node, waiter: asyncio.Future) -> None:
        try:
            node.waiters.remove(waiter)
        except ValueError:
            pass
        if node.active == 0 and not node.waiters:
            self._nodes.pop(address, None)

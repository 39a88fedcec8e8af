"""Which node serves a request: facts about the fleet in, an order of nodes out; no I/O.

Among usable nodes (network.status), those that hold the model in memory come
first, then those that have it on disk; degraded nodes only when no healthy one
has it. Within a group, the fewest requests in flight (and waiting) first (the
gateway's count, or what a server other than Ollama says it runs and queues,
whichever is more), then the lowest smoothed latency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def model_key(name: str) -> str:
    """Return a model's name as Ollama resolves it: lower case, ":latest" by default."""
    name = name.strip().lower()
    if not name:
        return name
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


@dataclass
class NodeView:
    """What routing knows of one node (a snapshot of its row, and live load)."""

    url: str  # http://host:port, no userinfo
    address: str  # host:port, as records and events name it
    status: str
    usable: bool
    degraded: bool
    loaded: frozenset[str] = frozenset()  # model keys in memory
    disk: frozenset[str] = frozenset()  # model keys on disk
    latency_ms: float | None = None  # smoothed
    credential: dict | None = field(default=None, repr=False)
    version: str = ""
    id: int | None = None  # the row's, to have it probed now
    kind: str = "ollama"  # network.choices.NodeKind: only Ollama speaks /api/...
    busy: int = 0  # running and waiting, as a server other than Ollama says

    def speaks(self, openai: bool) -> bool:
        """Whether it answers that API: every kind OpenAI's, Ollama alone its own."""
        return openai or self.kind == "ollama"


@dataclass(frozen=True)
class Choice:
    """The nodes to try for a request, best first, or why there are none."""

    nodes: tuple[NodeView, ...]
    known: bool  # some node (usable or not) has the model
    reason: str = ""


def rank(
    nodes: Iterable[NodeView],
    model: str,
    load: dict[str, int],
) -> Choice:
    """Return the usable nodes that can serve model, best first.

    load maps a node's address to its requests in flight plus those waiting for
    it. A model no node knows is not known (404); known but on no usable node is
    an empty choice with a reason (503).
    """
    key = model_key(model)
    known = False
    ranked: list[tuple[tuple, NodeView]] = []
    for node in nodes:
        in_memory = key in node.loaded
        if not (in_memory or key in node.disk):
            continue
        known = True
        if not node.usable:
            continue
        order = (
            node.degraded,  # healthy first; degraded only when nothing else
            not in_memory,  # loaded, then on disk
            # The server's own count includes this gateway's requests and others'.
            max(load.get(node.address, 0), node.busy),
            node.latency_ms if node.latency_ms is not None else float("inf"),
            node.address,  # a stable order for equals
        )
        ranked.append((order, node))
    ranked.sort(key=lambda pair: pair[0])
    if ranked:
        return Choice(tuple(node for _, node in ranked), known=True)
    if known:
        return Choice((), known=True, reason=f"no usable node has model {model!r}")
    return Choice((), known=False)


def pinned(nodes: Sequence[NodeView], address: str) -> NodeView | None:
    """Return the node a client named (X-SOLLOL-Node: host:port or its URL)."""
    wanted = address.strip().lower().removeprefix("http://").removeprefix("https://")
    wanted = wanted.rstrip("/")
    for node in nodes:
        if node.address.lower() == wanted:
            return node
    return None

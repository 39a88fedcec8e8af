"""The gateway's picture of the fleet: node rows read again every second or so.

The probes (network.cycle) keep the rows true; the gateway only reads them, in a
thread of its own so the event loop never waits for the database. A node that
failed a request before its first byte is set aside until a probe has looked at
it again (`suspect`), and that probe is asked for at once (`probe_now`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connection
from django.utils import timezone

from network import cycle
from network.choices import NodeStatus
from network.gateway.routing import NodeView, model_key
from network.models import OllamaNode
from network.status import node_usable

logger = logging.getLogger(__name__)

FIELDS = (
    "id",
    "url",
    "host",
    "port",
    "status",
    "probe_status",
    "version",
    "loaded_models",
    "disk_models",
    "latency_avg_ms",
    "latency_ms",
    "credential",
    "kind",
    "serving",
    "loaded_models_failed",
)
# How long a node that failed a request is left out, at most, when no probe
# comes to look at it (no scheduler running, say).
SUSPECT_FOR = 10.0


def _busy(serving: dict | None) -> int:
    """Requests a server other than Ollama says it runs and holds waiting (its
    other clients' too), as its last probe read them."""
    if not serving:
        return 0
    running = serving.get("requests_running", serving.get("slots_busy")) or 0
    return int(running) + int(serving.get("requests_waiting") or 0)


def read_nodes() -> list[NodeView]:
    """Return every node as routing sees it (call from a thread)."""
    views = []
    for row in OllamaNode.objects.values_list(*FIELDS, named=True):
        latency = row.latency_avg_ms if row.latency_avg_ms is not None else None
        views.append(
            NodeView(
                url=row.url,
                address=OllamaNode(host=row.host, port=row.port).address,
                status=row.status,
                usable=node_usable(row.status, row.probe_status),
                degraded=NodeStatus.DEGRADED in (row.status, row.probe_status),
                # Not known to hold what it held once /api/ps fails: no
                # preference for it by what it may have unloaded since.
                loaded=frozenset()
                if row.loaded_models_failed
                else frozenset(_names(row.loaded_models)),
                disk=frozenset(_names(row.disk_models)),
                latency_ms=latency if latency is not None else row.latency_ms,
                credential=row.credential,
                version=row.version,
                id=row.id,
                kind=row.kind,
                busy=_busy(row.serving),
            )
        )
    return views


def _names(models: object) -> list[str]:
    if not isinstance(models, list):
        return []
    return [
        model_key(m["name"])
        for m in models
        if isinstance(m, dict) and isinstance(m.get("name"), str)
    ]


class FleetView:
    """The nodes as last read, refreshed every `interval` seconds."""

    def __init__(
        self,
        interval: float,
        *,
        reader: Callable[[], list[NodeView]] = read_nodes,
        prober: Callable[[list[int]], object] | None = None,
    ) -> None:
        self.interval = interval
        self.reader = reader
        self.prober = prober
        self.nodes: list[NodeView] = []
        self.read_at = 0.0
        self._suspects: dict[str, float] = {}  # address -> monotonic time marked
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-fleet")
        self._task: asyncio.Task | None = None
        self._refreshing: asyncio.Future | None = None

    async def start(self) -> None:
        """Read the nodes once, then keep reading them in the background."""
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._keep_fresh(), name="gateway-fleet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, _close_connection)
        self._thread.shutdown(wait=False)

    async def refresh(self) -> None:
        """Read the rows now (concurrent callers share one read)."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        loop = asyncio.get_running_loop()
        self._refreshing = loop.run_in_executor(self._thread, self._read)
        try:
            self.nodes = await asyncio.shield(self._refreshing)
            self.read_at = time.monotonic()
        finally:
            self._refreshing = None

    def _read(self) -> list[NodeView]:
        close_old_connections()
        return self.reader()

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:  # the database may be away for a moment
                logger.warning("gateway: could not read the nodes", exc_info=True)

    def usable(self) -> list[NodeView]:
        """Return the nodes, without those set aside since a failure."""
        if not self._suspects:
            return self.nodes
        now = time.monotonic()
        for address, since in list(self._suspects.items()):
            if now - since > SUSPECT_FOR:
                del self._suspects[address]
        return [n for n in self.nodes if n.address not in self._suspects]

    def suspect(self, node: NodeView) -> None:
        """Set node aside after a failed request, and have it probed now."""
        if node.address in self._suspects:
            return
        self._suspects[node.address] = time.monotonic()
        if self.prober is not None and node.id is not None:
            loop = asyncio.get_running_loop()
            probed = loop.run_in_executor(self._thread, self._probe, node.id)
            probed.add_done_callback(lambda done: self._probed(node, done))

    def _probe(self, node_id: int) -> list[NodeView]:
        close_old_connections()
        assert self.prober is not None
        self.prober([node_id])
        return self.reader()

    def _probed(self, node: NodeView, done: asyncio.Future) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:
            logger.warning(
                "gateway: probing %s failed", node.address, exc_info=done.exception()
            )
            return
        self.nodes = done.result()
        self.read_at = time.monotonic()
        # The probe has looked: its verdict, now in the rows, decides from here on.
        self._suspects.pop(node.address, None)


def _close_connection() -> None:
    connection.close()  # the connection of the thread this runs in


def probe_nodes(node_ids: list[int]) -> object:
    """Probe these nodes now and record what they said (the regular prober's code)."""
    return cycle.run_cycle(now=timezone.now(), node_ids=node_ids, bookkeeping=False)

"""A gateway served on a thread of its own, in front of simulated nodes.

Its server is the one `serve --gateway-port` uses (core/lean/server.py).

The gateway's picture of the fleet is what the simulated nodes hold right now
(`views_of`), as a probe would have read it, so a test decides which node is
healthy, loaded or dead without waiting for probe cycles; tests/test_gateway_live.py
runs the whole dashboard, probes included.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

from core.lean.server import Server
from network.gateway.proxy import Gateway
from network.gateway.routing import NodeView, model_key
from simulator.ollama import SimulatedNode, new_event_loop
from tests.liveserver import free_port


def view_of(node: SimulatedNode, *, status: str = "healthy", **changes) -> NodeView:
    """Return what routing would know of node after a probe."""
    answering = status in ("healthy", "degraded")
    view = NodeView(
        url=node.url,
        address=node.address,
        status=status,
        usable=answering,
        degraded=status == "degraded",
        loaded=frozenset(model_key(m) for m in node.loaded_models()),
        disk=frozenset(model_key(m) for m in node.disk_models()),
        latency_ms=1.0,
        version=node.version,
        id=node.index,
    )
    for key, value in changes.items():
        setattr(view, key, value)
    return view


class ServedGateway:
    """A Gateway on 127.0.0.1:<free port>, its fleet given by the test."""

    def __init__(self, nodes: list[NodeView], *, fleet=None) -> None:
        self.views = list(nodes)
        self.fleet = fleet
        self.probed: list[int] = []  # node ids the gateway asked to probe now
        self.gateway = Gateway()
        self.gateway.fleet.reader = lambda: list(self.views)
        self.gateway.fleet.prober = self._probe
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = new_event_loop()
        self.server = Server(self.gateway, "127.0.0.1", self.port)
        self.thread = threading.Thread(
            target=self._serve, name="gateway-under-test", daemon=True
        )

    def _serve(self) -> None:
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            # Here, where no other loop runs: with Redis, channels_redis flushes
            # its layer on the loop as the loop closes (an async test's own loop
            # runs on the main thread).
            self.loop.close()

    def probed_soon(self, timeout: float = 5.0) -> list[int]:
        """The node ids asked to be probed, once one was: the gateway asks from a
        thread of its own, maybe just after the client had its answer."""
        deadline = time.monotonic() + timeout
        while not self.probed and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.probed)

    def _probe(self, ids: list[int]) -> None:
        """What a probe finds: a simulated node that is not alive is unhealthy."""
        self.probed.extend(ids)
        if self.fleet is None:
            return
        for view in self.views:
            if view.id in ids and not self.fleet.nodes[view.id].alive:
                view.status, view.usable = "unhealthy", False

    def start(self) -> ServedGateway:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            threading.Event().wait(0.025)
        raise RuntimeError("the gateway did not start")

    def set_fleet(self, nodes: list[NodeView]) -> None:
        """Give the gateway a new picture of the fleet, now."""
        self.views = list(nodes)
        asyncio.run_coroutine_threadsafe(
            self.gateway.fleet.refresh(), self.loop
        ).result(5)

    def run(self, coroutine):
        """Run a coroutine on the gateway's loop; return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextlib.contextmanager
def served_gateway(nodes: list[NodeView], **options) -> Iterator[ServedGateway]:
    served = ServedGateway(nodes, **options).start()
    try:
        yield served
    finally:
        served.stop()

"""`manage.py gateway`: the gateway alone, at the root of a port, in production.

The same app as `daphne -p 11434 sollol_site.asgi:gateway` on the small server
`serve --gateway-port` uses (core/lean/server.py): about twice daphne's requests
a second, and a twentieth of its p99 at 500 a second (bench/RESULTS.md). With
--reuse-port, several of these processes share one port and the kernel spreads
connections among them; with Redis configured they share the nodes' slots and
queues (network/gateway/shared.py).
Probing, pruning and the page stay with the dashboard's processes.
"""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from core.lean.server import Server
from sollol_site.management.commands.serve import _loop_factory


class Command(BaseCommand):
    help = "Serve the gateway (Ollama's API for the whole fleet) on a port of its own."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.SOLLOL_HOST)
        parser.add_argument(
            "--port",
            type=int,
            default=settings.SOLLOL_GATEWAY_PORT or 11434,
            help="default: SOLLOL_GATEWAY_PORT, else 11434 (Ollama's)",
        )
        parser.add_argument(
            "--reuse-port",
            action="store_true",
            help="let other gateway processes listen on the same port (SO_REUSEPORT)",
        )

    def handle(self, *args, host: str, port: int, reuse_port: bool, **_) -> None:
        from sollol_site.asgi import gateway

        server = Server(gateway, host, port, graceful=5, reuse_port=reuse_port)

        def stop(*_) -> None:
            server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self._serve(server, host, port))

    async def _serve(self, server: Server, host: str, port: int) -> None:
        await server.start()
        self.stdout.write(f"SOLLOL gateway (Ollama's API) on http://{host}:{port}/")
        self.stdout.flush()
        try:
            while not server.should_exit:
                await asyncio.sleep(0.1)
        finally:
            await server.stop()
        self.stdout.write("SOLLOL gateway stopped.")

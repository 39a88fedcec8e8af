"""`manage.py serve`: the embedded dashboard, one process, on uvicorn.

With --gateway-port, the gateway's port is served in the same process by
core/lean/server.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from core.addresses import is_loopback
from core.lean.server import Server as LeanServer
from core.lean.websocket import SendManyWebSocketProtocol
from core.logformat import ACCESS_LOGGER
from network.services import lifecycle
from sollol_site.scheduler import Scheduler


def allowed_hosts_for(bind_host: str) -> list[str]:
    """Return the Host names to accept when serving on bind_host."""
    if settings.ALLOWED_HOSTS_FROM_ENV:
        return settings.ALLOWED_HOSTS
    if bind_host in {"0.0.0.0", "::"}:
        # Serving every interface means answering to any name it is reached by.
        return ["*"]
    return list(dict.fromkeys([*settings.ALLOWED_HOSTS, bind_host]))


def open_door_warning(bind_host: str) -> str | None:
    """Return the loud warning for serving beyond loopback with writes open."""
    if is_loopback(bind_host) or settings.SOLLOL_API_TOKENS:
        return None
    return (
        f"WARNING: serving on {bind_host} with no SOLLOL_API_TOKEN: anyone who can "
        "reach this port can register, change and remove applications, add nodes "
        "for the dashboard to probe, and write logs, traces and metrics. Set "
        "SOLLOL_API_TOKEN (and SOLLOL_READ_TOKEN to protect reads too)."
    )


class Command(BaseCommand):
    help = "Run the dashboard embedded: web server and periodic jobs in one process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.SOLLOL_HOST)
        parser.add_argument("--port", type=int, default=settings.SOLLOL_PORT)
        parser.add_argument(
            "--gateway-port",
            type=int,
            default=settings.SOLLOL_GATEWAY_PORT,
            help="also serve the gateway (Ollama's API for the whole fleet) at the "
            "root of this port, e.g. 11434 (env SOLLOL_GATEWAY_PORT; it is always "
            "under /ollama/ on --port)",
        )
        parser.add_argument(
            "--no-migrate", action="store_true", help="do not apply migrations first"
        )
        parser.add_argument(
            "--access-log",
            action="store_true",
            default=settings.SOLLOL_ACCESS_LOG,
            help="log every HTTP request of the dashboard's port (client, method, "
            "path, status) on standard error, as text or JSON (SOLLOL_LOG_FORMAT); "
            "env SOLLOL_ACCESS_LOG",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_true",
            help="do not run the periodic jobs here (Celery beat runs them)",
        )

    def handle(self, *args, host: str, port: int, **options) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        # The configured nodes and backends are listed from the first answer on
        # (unknown until probed), not only once the first probe round ran.
        lifecycle.sync_configured(now=timezone.now())
        settings.ALLOWED_HOSTS = allowed_hosts_for(host)
        warning = open_door_warning(host)
        if warning:
            self.stderr.write(self.style.WARNING(warning))
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(
                self._serve(
                    host,
                    port,
                    not options["no_scheduler"],
                    options["gateway_port"],
                    access_log=options["access_log"],
                )
            )

    async def _serve(
        self,
        host: str,
        port: int,
        run_scheduler: bool,
        gateway_port: int = 0,
        *,
        access_log: bool = False,
    ) -> None:
        # uvicorn re-raises the signal that stopped it once it has shut down; with
        # these handlers that re-raise is a no-op, so we can stop our jobs cleanly.
        # Until uvicorn installs its own (when serve() starts), a signal is noted
        # here and stops the server as soon as it exists: one sent during start-up
        # was lost, and the dashboard kept serving.
        stopping: dict = {"server": None, "asked": False}

        def stop_when_ready(*_) -> None:
            stopping["asked"] = True
            if stopping["server"] is not None:
                stopping["server"].should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop_when_ready)
        config = uvicorn.Config(
            "sollol_site.asgi:application",
            host=host,
            port=port,
            loop="none",
            http="httptools",
            # uvicorn's websockets-sansio, sending a stream's messages
            # many at a time (core/lean/websocket.py).
            ws=SendManyWebSocketProtocol,
            # Compressing every stream message for every viewer cost a fifth of the
            # event loop with 50 log viewers (bench/logs.py); the dashboard serves a
            # LAN, where bandwidth is cheap and the CPU is shared with probing.
            ws_per_message_deflate=False,
            # X-Forwarded-For is read by core.proxies, from SOLLOL_TRUSTED_PROXIES
            # only (uvicorn's own would believe any client on loopback).
            proxy_headers=False,
            lifespan="on",
            log_level="warning",
            # Through the settings' LOGGING (text or JSON), not uvicorn's own.
            log_config=None,
            access_log=access_log,
            timeout_graceful_shutdown=5,
        )
        if access_log:
            logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
        server = stopping["server"] = uvicorn.Server(config)
        server.should_exit = stopping["asked"]
        gateway = None
        if gateway_port:
            # Its own small server: at thousands of small requests a second, a
            # second uvicorn cost as much CPU as the gateway (core/lean/server.py).
            from sollol_site.asgi import gateway as gateway_app

            gateway = LeanServer(gateway_app, host, gateway_port, graceful=5)
        scheduler = Scheduler(settings.CELERY_BEAT_SCHEDULE) if run_scheduler else None
        if scheduler:
            scheduler.start()
        # Objects alive after start-up live for good; keep them out of GC passes.
        gc.collect()
        gc.freeze()
        self.stdout.write(f"SOLLOL dashboard on http://{host}:{port}/", ending="\n")
        if gateway is not None:
            self.stdout.write(
                f"SOLLOL gateway (Ollama's API) on http://{host}:{gateway_port}/",
                ending="\n",
            )
        self.stdout.flush()
        gateway_task = asyncio.ensure_future(gateway.serve()) if gateway else None
        try:
            await server.serve()
        finally:
            if gateway is not None and gateway_task is not None:
                gateway.should_exit = True
                await gateway_task
            if scheduler:
                await scheduler.stop()
        self.stdout.write("SOLLOL dashboard stopped.")


def _loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

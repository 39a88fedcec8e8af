"""The one ASGI application: lean ingest routes, Django, and the WebSocket streams."""

from __future__ import annotations

import gc
import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sollol_site.settings")
django_application = get_asgi_application()

# Imported after Django is set up: these import models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from activity.api.ingest import routes as activity_ingest_routes  # noqa: E402
from activity.routing import websocket_urlpatterns as activity_streams  # noqa: E402
from alerts.routing import websocket_urlpatterns as alert_streams  # noqa: E402
from applications.api.ingest import routes as application_ingest_routes  # noqa: E402
from applications.routing import websocket_urlpatterns as application_streams  # noqa: E402
from core import realtime  # noqa: E402
from core.lean.router import LeanRouter  # noqa: E402
from core.lean.writer import stop_writers  # noqa: E402
from core.proxies import ProxyHeaders  # noqa: E402
from core.tokens import may_read  # noqa: E402
from frameworks.routing import websocket_urlpatterns as framework_streams  # noqa: E402
from network.gateway.proxy import Gateway  # noqa: E402
from network.routing import websocket_urlpatterns as network_streams  # noqa: E402

if settings.SOLLOL_CAPTURE_LOGS:
    from activity import capture  # noqa: E402

    capture.install(settings.SOLLOL_CAPTURE_LOG_LEVEL)


class BrowserOriginValidator(OriginValidator):
    """Refuse cross-site browser sockets; let scripts without an Origin connect."""

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


class ReadAccess:
    """With SOLLOL_READ_TOKEN set, a stream needs a token or a logged-in user.

    A browser cannot put headers on a WebSocket, but it sends its session cookie:
    the page's own streams pass once its user logged in. Refused sockets are
    told why and closed with 4401.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.authenticated = AuthMiddlewareStack(self._gate)

    async def __call__(self, scope, receive, send) -> None:
        if not settings.SOLLOL_READ_TOKENS:
            await self.inner(scope, receive, send)
            return
        await self.authenticated(scope, receive, send)

    async def _gate(self, scope, receive, send) -> None:
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"),
            None,
        )
        # A viewer's groups are read from the database: not on the event loop.
        if await database_sync_to_async(may_read)(authorization, scope.get("user")):
            await self.inner(scope, receive, send)
            return
        await refuse_socket(
            receive, send, 4401, "reading this dashboard needs a token or a login"
        )


async def refuse_socket(receive, send, code: int, message: str) -> None:
    """Accept a socket only to say why it is refused, then close it with code.

    A close before the accept is an HTTP 403 at the handshake in uvicorn and
    daphne: the client would never see the code.
    """
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    error = json.dumps({"type": "error", "message": message})
    await send({"type": "websocket.send", "text": error})
    await send({"type": "websocket.close", "code": code})


class NoSuchStream:
    """The last route: an unknown path is closed with 4404, not a 500."""

    async def __call__(self, scope, receive, send) -> None:
        await refuse_socket(receive, send, 4404, "no such stream")


class Lifespan:
    """Start-up and shutdown hooks of the whole process."""

    async def __call__(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                realtime.attach_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await gateway.stop()
                stop_writers()
                await send({"type": "lifespan.shutdown.complete"})
                return


GATEWAY_PREFIX = "/ollama"
# The process's one gateway: under /ollama/ here and, with a port of its own, at
# the root there (`gateway` below), with one set of slots, queues and records.
gateway = Gateway()


class GatewayMount:
    """/ollama/... goes to the gateway (before the lean lane's write policy: the
    gateway has its own tokens and limits); the rest to the dashboard."""

    def __init__(self, gateway: Gateway, dashboard) -> None:
        self.gateway = gateway
        self.dashboard = dashboard

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"]
        if path == GATEWAY_PREFIX or path.startswith(GATEWAY_PREFIX + "/"):
            inner = path[len(GATEWAY_PREFIX) :] or "/"
            root = scope.get("root_path", "") + GATEWAY_PREFIX
            scope = {**scope, "path": inner, "root_path": root}
            await self.gateway(scope, receive, send)
        else:
            await self.dashboard(scope, receive, send)


application = ProxyHeaders(
    ProtocolTypeRouter(
        {
            "http": GatewayMount(
                gateway,
                LeanRouter(
                    {**application_ingest_routes, **activity_ingest_routes},
                    fallback=ASGIStaticFilesHandler(django_application),
                ),
            ),
            "websocket": BrowserOriginValidator(
                ReadAccess(
                    URLRouter(
                        [
                            *application_streams,
                            *network_streams,
                            *activity_streams,
                            *framework_streams,
                            *alert_streams,
                            re_path(r"", NoSuchStream()),
                        ]
                    )
                ),
                settings.ALLOWED_HOSTS,
            ),
            "lifespan": Lifespan(),
        }
    )
)

# `gateway` is also an ASGI application of its own, exactly Ollama's paths at the
# root of a port: `daphne -p 11434 sollol_site.asgi:gateway`, or
# `serve --gateway-port 11434`.

# What is alive once the application is built lives as long as the process: keep it
# out of the collector's passes. Without this, under daphne a full collection walked
# all of Django on the serving thread (80-100 ms, every few seconds), and the paced
# p99 was 93-103 ms against 22-24 ms with it (bench/RESULTS.md). `serve` freezes
# again once its scheduler and writers have started.
gc.collect()
gc.freeze()

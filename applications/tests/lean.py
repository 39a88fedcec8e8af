"""POST through the whole ASGI app, as a server hands it a request.

The lean lane (core.lean) serves register, heartbeat and unregister before Django, so
Django's test client does not reach them; this does, with the test client's
answer interface (status_code, headers by name, json()). The lean writer writes
from a thread of its own: tests using this need a transactional database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync

from sollol_site.tests.test_ratelimit import exchange, http_scope

LEAN_PATHS = frozenset({"/api/applications/register", "/api/applications/heartbeat"})


def is_lean(path: str) -> bool:
    """Whether the lean lane serves a POST to path (unregister: by body or path)."""
    return path in LEAN_PATHS or (
        path.startswith("/api/applications/") and path.endswith("/unregister")
    )


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def json(self) -> Any:
        return json.loads(self.content)


def through_app(
    method: str, path: str, data: str | bytes = b"", **headers: str
) -> Answer:
    """Send one request through the ASGI app from 127.0.0.1; Django's test-client
    style headers (HTTP_AUTHORIZATION=...) are taken."""
    sent = [(b"content-type", b"application/json")]
    for name, value in headers.items():
        if name.startswith("HTTP_"):
            sent.append((name[5:].replace("_", "-").lower().encode(), value.encode()))
    body = data.encode() if isinstance(data, str) else data
    status, answer_headers, content = async_to_sync(exchange)(
        http_scope(method, path, "127.0.0.1", tuple(sent)), body
    )
    named = {
        name.decode().lower(): value.decode() for name, value in answer_headers.items()
    }
    return Answer(status, named, content)

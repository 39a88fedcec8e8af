"""Which web pages may use the gateway from a browser: Ollama's origin policy.

A browser sends `Origin` with a page's requests to another site. Ollama answers
those only for the origins it allows (OLLAMA_ORIGINS, plus its defaults: the
machine itself on any port, desktop-app and file pages, browser extensions), with
the CORS headers a browser needs, and refuses the others with 403. Without that
check any web page the user opens could make their browser send work to the fleet
(a "simple" POST needs no preflight). The gateway does the same, with
SOLLOL_GATEWAY_ORIGINS in OLLAMA_ORIGINS' place; a page of the gateway's own
origin is always allowed.
"""

from __future__ import annotations

import fnmatch
import functools

from django.conf import settings

# As Ollama's envconfig: the machine itself, any port, either scheme.
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")
DEFAULT_ORIGINS = (
    *(
        f"{scheme}://{host}{port}"
        for host in _LOCAL_HOSTS
        for scheme in ("http", "https")
        for port in ("", ":*")
    ),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)
# What gin's CORS middleware lets in with AllowBrowserExtensions, as Ollama sets it.
EXTENSION_SCHEMES = (
    "chrome-extension://",
    "safari-extension://",
    "moz-extension://",
    "ms-browser-extension://",
)
METHODS = b"GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
ALLOWED_HEADERS = (
    b"Authorization, Content-Type, User-Agent, Accept, X-Requested-With, "
    b"OpenAI-Beta, X-SOLLOL-Node, X-SOLLOL-App, traceparent"
)
PREFLIGHT_MAX_AGE = b"43200"  # seconds a browser may keep a preflight's answer


@functools.lru_cache(maxsize=8)
def _patterns(configured: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(entry.strip().lower() for entry in configured if entry.strip()) + (
        DEFAULT_ORIGINS
    )


def allowed(origin: str, host: str | None) -> bool:
    """Whether a page of origin may use the gateway (host: the request's Host)."""
    origin = origin.strip().lower()
    if origin.startswith(EXTENSION_SCHEMES):
        return True
    if host and origin.partition("://")[2] == host.strip().lower():
        return True  # the gateway's own origin
    return any(
        fnmatch.fnmatchcase(origin, pattern)
        for pattern in _patterns(tuple(settings.SOLLOL_GATEWAY_ORIGINS))
    )


def answer_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What every answer to an allowed page carries."""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
    ]


def preflight_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What the answer to an allowed page's preflight (OPTIONS) carries."""
    return [
        *answer_headers(origin),
        (b"access-control-allow-methods", METHODS),
        (b"access-control-allow-headers", ALLOWED_HEADERS),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE),
    ]

"""Parse and normalize the addresses of nodes and backends, from any source."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from core.jsonio import PayloadError

OLLAMA_PORT = 11434
RPC_PORT = 50052
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _host(value: str) -> str:
    host = value.strip().lower()
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise PayloadError(f"{value!r} is not a host name or IP address") from None
        return host
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def _split(value: str, default_scheme: str) -> tuple[str, str, int | None]:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError("an address must be a non-empty string")
    text = value.strip()
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise PayloadError(f"{value!r} is not a valid address: {exc}") from None
    if parts.username or parts.password or parts.query or parts.fragment:
        raise PayloadError(
            f"{value!r} must not carry credentials, a query or a fragment"
        )
    if parts.path not in ("", "/"):
        raise PayloadError(f"{value!r} must not have a path")
    if not parts.hostname:
        raise PayloadError(f"{value!r} has no host")
    if port == 0:
        raise PayloadError(f"{value!r} has port 0")
    return parts.scheme.lower(), _host(parts.hostname), port


def is_loopback(host: str | None) -> bool:
    """Whether host (a name or an address, no brackets) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def host_port(host: str, port: int) -> str:
    """Return host:port as events name nodes, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(value: str) -> tuple[str, int]:
    """Return (host, port) of host:port as events name nodes ([::1]:11434 for IPv6)."""
    host, separator, port = value.rpartition(":")
    if not separator or not port.isdigit():
        raise PayloadError(f"{value!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def node_name(reported: str) -> str:
    """Return how activity events name a node (host:port) from what a router said.

    Routers name nodes as they like: a URL loses its scheme and trailing slash,
    anything else is kept as given, so a report is never refused for its name.
    """
    if "://" in reported:
        reported = reported.split("://", 1)[1]
    return reported.rstrip("/")


def node_url(value: str) -> tuple[str, str, int]:
    """Return (url, host, port) of an Ollama node given as a URL or host[:port]."""
    scheme, host, port = _split(value, "http")
    if scheme not in ("http", "https"):
        raise PayloadError(f"{value!r}: a node is reached over http or https")
    port = port or OLLAMA_PORT
    return f"{scheme}://{host}:{port}", host.strip("[]"), port


def backend_address(value: str) -> tuple[str, str, int]:
    """Return (address, host, port) of an RPC backend given as host[:port]."""
    scheme, host, port = _split(value, "tcp")
    if scheme not in ("tcp", "rpc"):
        raise PayloadError(f"{value!r}: an RPC backend is host:port")
    port = port or RPC_PORT
    return f"{host}:{port}", host.strip("[]"), port

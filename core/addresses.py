"""Parse and normalize the addresses of nodes and backends, from any source."""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from core.httpclient import Credential
from core.jsonio import PayloadError

OLLAMA_PORT = 11434
# A node's bearer token follows its URL: https://host:443;token=<token>.
TOKEN_MARK = ";token="
_TOKEN = re.compile(re.escape(TOKEN_MARK), re.IGNORECASE)
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


def _split(
    value: str, default_scheme: str, *, credentials: bool = False
) -> tuple[str, str, int | None, Credential | None]:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError("an address must be a non-empty string")
    # What errors may repeat: never a password or a token, not even a piece of
    # one that a parser's message would quote.
    shown = masked(value)
    text, *token = _TOKEN.split(value.strip(), maxsplit=1)
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        why = "" if shown != value else f": {exc}"
        raise PayloadError(f"{shown!r} is not a valid address{why}") from None
    userinfo = parts.username is not None or parts.password is not None
    if (userinfo or token) and not credentials:
        raise PayloadError(
            f"{shown!r} carries credentials; only the operator's configuration "
            "and the API may give a node credentials"
        )
    if parts.query or parts.fragment:
        raise PayloadError(f"{shown!r} must not carry a query or a fragment")
    if parts.path not in ("", "/"):
        raise PayloadError(f"{shown!r} must not have a path")
    if not parts.hostname:
        raise PayloadError(f"{shown!r} has no host")
    if port == 0:
        raise PayloadError(f"{shown!r} has port 0")
    try:
        if userinfo and token:
            raise ValueError("give user:password@ or ;token=, not both")
        if userinfo:
            user, password = (
                unquote(parts.username or ""),
                unquote(parts.password or ""),
            )
            credential = Credential.basic(user, password)
        else:
            credential = Credential.bearer(unquote(token[0].strip())) if token else None
    except ValueError as exc:
        raise PayloadError(f"{shown!r}: {exc}") from None
    return parts.scheme.lower(), _host(parts.hostname), port, credential


def masked(value: str) -> str:
    """Return an address as it may be shown: user:password@ and ;token= as ***.

    Everything between the scheme and the last @ is userinfo to a URL parser
    (a password with a / in it included), and everything after ;token= is token.
    """
    if not isinstance(value, str):
        return value
    text, *token = _TOKEN.split(value, maxsplit=1)
    scheme, separator, rest = text.rpartition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{separator}{rest}" + (f"{TOKEN_MARK}***" if token else "")


@functools.lru_cache(maxsize=4096)  # asked once a gateway request, of few clients
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


class NodeAddress(NamedTuple):
    """A node's URL (without credentials), host, port, credential and the kind of
    server it was declared as (None: not said)."""

    url: str
    host: str
    port: int
    credential: Credential | None = None
    kind: str | None = None


# The kinds of inference server a node may be declared as (`llamacpp+http://...`),
# with the port each listens on by default (network.choices.NodeKind names them).
KIND_PORTS = {
    "ollama": OLLAMA_PORT,
    "llamacpp": 8080,  # llama.cpp's llama-server
    "vllm": 8000,
    "sglang": 30000,
    "tgi": 3000,  # Hugging Face text-generation-inference (its router)
    "lmstudio": 1234,
    "localai": 8080,
    "openai": 8000,  # any other OpenAI-compatible server
}


def node_url(value: str, *, credentials: bool = False) -> NodeAddress:
    """Return a node given as a URL or host[:port], perhaps led by its kind.

    `llamacpp+http://host:8080` declares the kind of server (KIND_PORTS), whose
    default port a URL without one gets; without a kind it is an Ollama node's
    (its kind is then None: not said). With credentials (the operator's own
    sources), the URL may carry user:password@ (sent as Basic) or end in
    ;token=<token> (sent as Bearer); elsewhere either is refused. The URL
    returned never carries them, nor the kind.
    """
    kind = None
    if isinstance(value, str) and (found := _KIND.match(value.strip())):
        kind = found[1].lower()
        if kind not in KIND_PORTS:
            kinds = ", ".join(sorted(KIND_PORTS))
            raise PayloadError(
                f"{masked(value)!r}: {kind!r} is not a kind of node ({kinds})"
            )
        value = value.strip()[found.end() :]
    scheme, host, port, credential = _split(value, "http", credentials=credentials)
    if scheme not in ("http", "https"):
        raise PayloadError(f"{masked(value)!r}: a node is reached over http or https")
    port = port or KIND_PORTS[kind or "ollama"]
    url = f"{scheme}://{host}:{port}"
    return NodeAddress(url, host.strip("[]"), port, credential, kind)


_KIND = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)\+(?=[A-Za-z]+://)")


def backend_address(value: str) -> tuple[str, str, int]:
    """Return (address, host, port) of an RPC backend given as host[:port]."""
    scheme, host, port, _ = _split(value, "tcp")
    if scheme not in ("tcp", "rpc"):
        raise PayloadError(f"{value!r}: an RPC backend is host:port")
    port = port or RPC_PORT
    return f"{host}:{port}", host.strip("[]"), port

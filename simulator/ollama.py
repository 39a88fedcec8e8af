"""Simulated Ollama nodes on loopback: the far side for tests, demos and benchmarks.

There is no real Ollama here, so everything that probes nodes talks to these instead.
They answer the way Ollama (Go, gin, net/http) answers, byte for byte where a client
could notice: the JSON field names, order and types of ``api/types.go``
(``ListModelResponse``, ``ProcessModelResponse``, ``ModelDetails``), Go's
``time.Time`` format (RFC 3339, nanoseconds with trailing zeros trimmed, the node's
UTC offset), gin's plain-text 404 and 405 (with ``Allow``), HEAD on the routes Ollama
registers for HEAD, and the 403 Ollama's host check gives to foreign ``Host`` names.

Pieces:

- ``SimulatedNode``: one node on one (host, port), with models on disk and in memory
  and faults to inject (slow, HTTP errors, hang, die, revive, a full queue, TCP
  resets, cut streams). It answers inference, native (``/api/chat``,
  ``/api/generate``, ``/api/embed``, ``/api/embeddings``) and OpenAI-compatible
  (``/v1/...``, translated by ``simulator.openai``), at once by default or in time
  (``set_generation``: paced tokens, ``num_parallel`` slots and a queue, clients
  that go away: ``simulator.work``). Its control methods are thread-safe: called
  from another thread they run on the node's loop.
- ``Fleet``: N nodes on consecutive loopback addresses (or ports) with a varied,
  deterministic set of models, plus an optional JSON control server for other
  processes (``GET /nodes``, ``POST /nodes/<i>/die`` …).
- ``running_fleet``: a context manager that runs a fleet on a background thread for
  synchronous code.

The HTTP server is a small asyncio ``Protocol`` (``simulator.httpserver``: HTTP/1.1,
keep-alive, pipelining, Content-Length and chunked bodies, ``Connection: close``):
one process keeps 1,000 idle nodes at no CPU cost, because nothing runs until a
request arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import random
import re
import resource
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any, cast

from simulator import openai
from simulator.httpserver import (
    HANG,
    JSON,
    NDJSON,
    RESET,
    STATUSES,
    TEXT,
    HttpConnection,
    Later,
    Listener,
    Outcome,
    Request,
    Response,
    Site,
    go_json,
    json_response,
)
from simulator.loops import ListeningServer, on_loop
from simulator.work import Generation, Pace, Slots, Timing, Work

DEFAULT_VERSION = "0.12.3"
DEFAULT_PORT = 11434
DEFAULT_KEEP_ALIVE = 300.0  # Ollama's default keep_alive: 5m
CONTEXT_LENGTH_SINCE = (0, 10, 0)  # /api/ps gained context_length in v0.10.0
DONE_FIRST_SINCE = (0, 12, 0)  # ChatResponse: "done", then "done_reason" (v0.12.0)
FOREVER_NS = 2**63 - 1  # a negative keep_alive is math.MaxInt64 nanoseconds in Go
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
INFERENCE_PATHS = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    }
)
GIB = 1024**3
MIB = 1024**2

_NS = 1_000_000_000


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """What Ollama knows about one model from its manifest and GGUF config."""

    name: str  # as /api/tags shows it: always with a tag
    family: str
    families: tuple[str, ...] | None
    parameter_size: str
    quantization_level: str
    size: int  # bytes on disk
    context_length: int = 4096  # what a default load allocates (num_ctx)
    kv_bytes_per_token: int = 128 * 1024
    embedding: bool = False
    embedding_length: int = 0

    @property
    def digest(self) -> str:
        """Return a stable sha256 hex digest, as Ollama lists it (no prefix)."""
        return hashlib.sha256(f"sollol-sim/{self.name}".encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        """Return ``ModelDetails`` in the field order of api/types.go."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": list(self.families) if self.families is not None else None,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def memory_size(self, context_length: int) -> int:
        """Return the bytes a loaded runner takes: weights, KV cache, graph."""
        graph = max(128 * MIB, self.size // 20)
        return self.size + context_length * self.kv_bytes_per_token + graph


def _spec(
    name: str,
    family: str,
    parameter_size: str,
    quantization: str,
    size: int,
    *,
    families: tuple[str, ...] | None = None,
    context_length: int = 4096,
    kv_kib: int = 128,
    embedding_length: int = 0,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=family,
        families=families if families is not None else (family,),
        parameter_size=parameter_size,
        quantization_level=quantization,
        size=size,
        context_length=context_length,
        kv_bytes_per_token=kv_kib * 1024,
        embedding=embedding_length > 0,
        embedding_length=embedding_length,
    )


# Sizes and details as `ollama list` shows these library models (digests are ours).
CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("llama3.2:3b", "llama", "3.2B", "Q4_K_M", 2_019_393_189, kv_kib=112),
        _spec("llama3.2:1b", "llama", "1.2B", "Q8_0", 1_321_098_329, kv_kib=32),
        _spec("llama3.1:8b", "llama", "8.0B", "Q4_K_M", 4_920_753_328),
        _spec("llama3.3:70b", "llama", "70.6B", "Q4_K_M", 42_520_413_916, kv_kib=320),
        _spec("qwen2.5:7b", "qwen2", "7.6B", "Q4_K_M", 4_683_087_332, kv_kib=56),
        _spec("qwen2.5:14b", "qwen2", "14.8B", "Q4_K_M", 8_988_124_069, kv_kib=192),
        _spec("qwen2.5-coder:7b", "qwen2", "7.6B", "Q4_K_M", 4_683_087_519, kv_kib=56),
        _spec("qwen3:8b", "qwen3", "8.2B", "Q4_K_M", 5_225_376_047, kv_kib=144),
        _spec("mistral:7b", "llama", "7.2B", "Q4_K_M", 4_372_824_384),
        _spec("gemma2:9b", "gemma2", "9.2B", "Q4_0", 5_443_152_417, kv_kib=336),
        _spec("gemma3:4b", "gemma3", "4.3B", "Q4_K_M", 3_338_801_804, kv_kib=136),
        _spec("phi3:3.8b", "phi3", "3.8B", "Q4_0", 2_176_178_913, kv_kib=384),
        _spec("deepseek-r1:7b", "qwen2", "7.6B", "Q4_K_M", 4_683_075_271, kv_kib=56),
        _spec(
            "llava:7b",
            "llama",
            "7B",
            "Q4_0",
            4_733_363_377,
            families=("llama", "clip"),
            kv_kib=512,
        ),
        _spec("codellama:13b", "llama", "13B", "Q4_0", 7_365_960_935, kv_kib=800),
        _spec(
            "nomic-embed-text:latest",
            "nomic-bert",
            "137M",
            "F16",
            274_302_450,
            context_length=2048,
            kv_kib=0,
            embedding_length=768,
        ),
        _spec(
            "mxbai-embed-large:latest",
            "bert",
            "334M",
            "F16",
            669_615_493,
            context_length=512,
            kv_kib=0,
            embedding_length=1024,
        ),
        _spec(
            "all-minilm:latest",
            "bert",
            "23M",
            "F16",
            45_960_996,
            context_length=256,
            kv_kib=0,
            embedding_length=384,
        ),
    )
}
CHAT_MODELS = tuple(name for name, spec in CATALOG.items() if not spec.embedding)
EMBEDDING_MODELS = tuple(name for name, spec in CATALOG.items() if spec.embedding)


def normalize_model_name(name: str) -> str:
    """Return the name as Ollama displays it: library prefix dropped, tag added."""
    name = name.strip()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def model_spec(name: str) -> ModelSpec:
    """Return the catalog entry for ``name``, or a plausible one made up from it."""
    name = normalize_model_name(name)
    if name in CATALOG:
        return CATALOG[name]
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)
    billions = (1, 2, 3, 4, 7, 8, 13, 14)[seed % 8]
    family = re.split(r"[^a-z]", name.lower(), maxsplit=1)[0] or "llama"
    return _spec(
        name,
        family,
        f"{billions}B",
        "Q4_K_M",
        billions * 600_000_000 + seed % 100_000_000,
    )


def version_tuple(version: str) -> tuple[int, ...]:
    """Return ``"0.12.3"`` as ``(0, 12, 3)``; anything unparsable sorts as newest."""
    parts = re.findall(r"\d+", version.split("-", 1)[0])
    return tuple(int(p) for p in parts[:3]) if parts else (999,)


# ------------------------------------------------------------------ Go-isms: time


def go_time(ns: int, utc_offset_minutes: int = 0) -> str:
    """Format Unix nanoseconds the way Go's ``time.Time`` marshals to JSON.

    RFC 3339 with nanoseconds, trailing zeros trimmed (none at all on a whole
    second), and ``Z`` or ``±hh:mm`` for the offset.
    """
    seconds, nanos = divmod(ns, _NS)
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    text = datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    if utc_offset_minutes == 0:
        return text + "Z"
    sign = "+" if utc_offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(utc_offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


_stamp_second: list[Any] = [None, b""]


def utc_stamp(ns: int) -> bytes:
    """Return ``time.Now().UTC()`` as Go's JSON writes it (no quotes), quickly.

    Ollama stamps every answer and every streamed chunk in UTC, whatever the
    machine's zone; the date part is formatted once a second.
    """
    seconds, nanos = divmod(ns, _NS)
    if seconds != _stamp_second[0]:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _stamp_second[0] = seconds
        _stamp_second[1] = text.encode()
    if not nanos:
        return _stamp_second[1] + b"Z"
    return b"%s.%sZ" % (_stamp_second[1], f"{nanos:09d}".rstrip("0").encode())


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": _NS,
    "m": 60 * _NS,
    "h": 3600 * _NS,
}


def keep_alive_ns(value: Any, default_seconds: float = DEFAULT_KEEP_ALIVE) -> int:
    """Return a ``keep_alive`` as nanoseconds, the way Ollama's ``Duration`` reads it.

    A number is seconds, a string a Go duration ("5m", "1h30m"); anything negative
    means "keep loaded forever". ``None`` gives the default.
    """
    if value is None:
        return int(default_seconds * _NS) if default_seconds >= 0 else FOREVER_NS
    if isinstance(value, bool):
        raise ValueError(f"keep_alive must be a number or a duration, not {value!r}")
    if isinstance(value, int | float):
        if value != value:  # NaN
            raise ValueError("keep_alive is not a number")
        if value < 0 or value == float("inf"):
            return FOREVER_NS
        return int(value * _NS)
    if not isinstance(value, str):
        raise ValueError(f"keep_alive must be a number or a duration, not {value!r}")
    text = value.strip()
    with contextlib.suppress(ValueError):  # a bare number, as OLLAMA_KEEP_ALIVE allows
        return keep_alive_ns(float(text))
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if not body or _DURATION.sub("", body):
        raise ValueError(f"time: invalid duration {value!r}")
    total = sum(float(n) * _UNIT_NS[unit] for n, unit in _DURATION.findall(body))
    return FOREVER_NS if sign < 0 else int(total)


def _require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"simulated nodes listen on loopback only, not {host}")


# ------------------------------------------------------------------- Ollama routes

# Method trees in the order Ollama's GenerateRoutes first registers each method;
# gin lists Allow in this order.
_METHOD_ORDER = ("HEAD", "GET", "POST", "DELETE")
_ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("HEAD", "GET"),
    "/api/version": ("HEAD", "GET"),
    "/api/pull": ("POST",),
    "/api/push": ("POST",),
    "/api/tags": ("HEAD", "GET"),
    "/api/show": ("POST",),
    "/api/delete": ("DELETE",),
    "/api/me": ("POST",),
    "/api/signout": ("POST",),
    "/api/create": ("POST",),
    "/api/copy": ("POST",),
    "/api/ps": ("GET",),
    "/api/generate": ("POST",),
    "/api/chat": ("POST",),
    "/api/embed": ("POST",),
    "/api/embeddings": ("POST",),
    "/v1/chat/completions": ("POST",),
    "/v1/completions": ("POST",),
    "/v1/embeddings": ("POST",),
    "/v1/models": ("GET",),
}
_PARAM_ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/api/blobs/", ("HEAD", "POST")),
    ("/api/user/keys/", ("DELETE",)),
    ("/v1/models/", ("GET",)),
)


def _methods_for(path: str) -> tuple[str, ...]:
    methods = _ROUTES.get(path)
    if methods is not None:
        return methods
    for prefix, param_methods in _PARAM_ROUTES:
        rest = path[len(prefix) :]
        if path.startswith(prefix) and rest and "/" not in rest:
            return param_methods
    return ()


_HOSTNAME = socket.gethostname().lower()


def _host_allowed(host_header: str) -> bool:
    """Return whether Ollama's allowedHostsMiddleware lets this Host through.

    Ollama listening on loopback answers 403 to a Host that is neither a local or
    private IP nor localhost, the machine's name, or a .localhost/.local/.internal
    name: its defence against DNS rebinding.
    """
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
        return address.is_loopback or address.is_private or address.is_unspecified
    host = host.lower()
    if host in ("", "localhost", _HOSTNAME):
        return True
    return host.endswith((".localhost", ".local", ".internal"))


@dataclass
class _Loaded:
    spec: ModelSpec
    size: int
    size_vram: int
    context_length: int
    keep_alive_ns: int
    expires_ns: int


class SimulatedNode(ListeningServer, Site):
    """One simulated Ollama server: models on disk and in memory, and faults.

    revive() listens again on the same address; faults set before are kept.
    """

    listener_class = Listener
    protocol_class = HttpConnection
    kind = "node"

    def __init__(
        self,
        host: str = "127.0.0.2",
        port: int = DEFAULT_PORT,
        *,
        version: str = DEFAULT_VERSION,
        models: Iterable[str] = ("llama3.2:3b", "nomic-embed-text"),
        vram_total: int | None = 24 * GIB,
        utc_offset_minutes: int = 0,
        default_keep_alive: float = DEFAULT_KEEP_ALIVE,
        index: int | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        _require_loopback(host)
        super().__init__()
        self.host = host
        self.port = port
        self.version = version
        self.vram_total = vram_total  # None: a GPU with room for anything; 0: CPU
        self.utc_offset_minutes = utc_offset_minutes
        self.default_keep_alive = default_keep_alive
        self.index = index
        self.clock = clock
        now = clock()
        # Pulled over the past weeks, newest last, so /api/tags has an order to keep.
        self._disk: dict[str, tuple[ModelSpec, int]] = {}
        names = [normalize_model_name(m) for m in models]
        for age, name in enumerate(reversed(names)):
            jitter = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % _NS
            modified = now - (age * 86_400 + 3_600) * _NS - jitter
            self._disk[name] = (model_spec(name), modified)
        self._loaded: dict[str, _Loaded] = {}
        self.delay = 0.0
        self.error_status: int | None = None
        self.error_message: str | None = None
        self.error_root = False
        self.busy_queue_full = False  # 503 "server busy" to inference requests
        self.hanging = False
        self.resetting = False  # read each request, then RST
        self.cut_after: int | None = None  # abort a stream after this many chunks
        self._slots = Slots(Pace())
        self._ready_at: dict[str, float] = {}  # loop time a loading model is ready
        self.requests: Counter[str] = Counter()  # by path, counted on arrival
        self.processed: Counter[str] = Counter()  # finished requests, by model
        self.connections_accepted = 0
        self._tags_cache: bytes | None = None
        self._ps_cache: tuple[bytes, int] | None = None  # body, valid until (ns)

    def __repr__(self) -> str:
        state = "up" if self.alive else "down"
        return f"<SimulatedNode {self.url} {state}>"

    @property
    def url(self) -> str:
        """Return the base URL clients use, e.g. ``http://127.0.0.2:11434``."""
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """Return ``host:port``, as activity events name a node."""
        return f"{self.host}:{self.port}"

    @property
    def requests_total(self) -> int:
        """Return how many requests arrived, over all paths."""
        return sum(self.requests.values())

    @property
    def open_connections(self) -> int:
        """Return how many client connections are open now."""
        return len(self._connections)

    @property
    def generating(self) -> int:
        """Return how many inference requests hold a slot now (loading, generating)."""
        return len(self._slots.generating)

    @property
    def queued(self) -> int:
        """Return how many inference requests wait for a slot now."""
        return len(self._slots.waiting)

    @property
    def dropped(self) -> list[float]:
        """Return when (``time.monotonic()``) clients went away mid-request.

        A client that closes its connection while its request waits for a slot
        or generates: the node stops that work and frees the slot, as Ollama does
        when Go cancels the request's context.
        """
        return list(self._slots.dropped)

    @property
    def pace(self) -> Pace:
        """Return the generation settings (``set_generation``)."""
        return self._slots.pace

    # ------------------------------------------------------------ control API

    @on_loop
    def hang(self, on: bool = True) -> None:
        """Accept connections and read requests but never answer (``on=False``: stop).

        Requests already hanging stay unanswered, as on a wedged server.
        """
        self.hanging = on

    @on_loop
    def set_delay(self, seconds: float) -> None:
        """Answer every request ``seconds`` late (0: at once)."""
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        self.delay = float(seconds)

    @on_loop
    def set_error(
        self, status: int | None, *, message: str | None = None, root: bool = False
    ) -> None:
        """Answer every API path with HTTP ``status`` and Ollama's ``{"error"}`` body.

        A fault no healthy Ollama shows (its 503 "server busy" comes only to
        inference requests: see set_queue_full); 503 carries that message all the
        same. ``/`` keeps answering "Ollama is running" unless ``root``. ``None``
        clears the error.
        """
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"an error status is 4xx or 5xx, not {status}")
        self.error_status = status
        self.error_message = message
        self.error_root = root

    @on_loop
    def set_queue_full(self, full: bool = True) -> None:
        """Answer inference requests 503 "server busy", as Ollama does past
        OLLAMA_MAX_QUEUE; /api/version, /api/ps and /api/tags answer as usual.

        This, not set_error(503), is what a busy real node looks like to a probe.
        """
        self.busy_queue_full = bool(full)

    @on_loop
    def set_generation(
        self,
        *,
        token_rate: float = 0.0,
        first_token: float = 0.0,
        load_seconds: float = 0.0,
        num_parallel: int = 1,
        max_queue: int = 512,
    ) -> None:
        """Generate as a real node does: in time, a few at once, the rest queued.

        ``token_rate`` tokens a second (0: the whole reply at once, the default),
        after ``first_token`` seconds, plus ``load_seconds`` when the model was not
        loaded. At most ``num_parallel`` inference requests run at once (each
        holds a slot from the start of its load to its last byte); up to
        ``max_queue`` more wait in order, sending nothing; past that, 503 "server
        busy". A streamed answer's head goes out with its first token. Every
        setting not given returns to its default; requests already running keep
        the pace they started with.
        """
        self._slots.pace = Pace(
            token_rate, first_token, load_seconds, num_parallel, max_queue
        )
        self._slots.refill()

    @on_loop
    def set_reset(self, on: bool = True) -> None:
        """Read every request, then reset the connection (TCP RST): no answer."""
        self.resetting = bool(on)

    @on_loop
    def set_cut(self, after_chunks: int | None) -> None:
        """Abort streamed answers after ``after_chunks`` body chunks (None: don't).

        0 cuts a stream before its head. Non-streamed answers are not affected;
        a stream already running keeps the setting it started with.
        """
        if after_chunks is not None and (
            isinstance(after_chunks, bool) or int(after_chunks) < 0
        ):
            raise ValueError("after_chunks is a count >= 0, or None")
        self.cut_after = None if after_chunks is None else int(after_chunks)

    @on_loop
    def heal(self) -> None:
        """Clear every fault: no delay, error, hang, reset or cut; listening."""
        self.delay = 0.0
        self.error_status = None
        self.error_message = None
        self.error_root = False
        self.busy_queue_full = False
        self.hanging = False
        self.resetting = False
        self.cut_after = None
        if not self.alive and self._loop is not None:
            self._listen()

    @on_loop
    def reset_counters(self) -> None:
        """Zero the request, model and connection counters, and forget drops."""
        self.requests.clear()
        self.processed.clear()
        self.connections_accepted = 0
        self._slots.dropped.clear()

    @on_loop
    def pull(self, model: str) -> dict[str, Any]:
        """Put ``model`` on disk (modified now); return its /api/tags entry."""
        spec = model_spec(model)
        self._disk[spec.name] = (spec, self.clock())
        self._tags_cache = None
        return self._tags_entry(spec, self._disk[spec.name][1])

    @on_loop
    def delete(self, model: str) -> bool:
        """Remove ``model`` from disk (and memory); return whether it was there."""
        name = normalize_model_name(model)
        self._unload(name)
        found = self._disk.pop(name, None) is not None
        self._tags_cache = None
        return found

    @on_loop
    def load(
        self,
        model: str,
        size_vram: int | None = None,
        keep_alive: float | str | None = None,
        *,
        context_length: int | None = None,
        expires_in: float | None = None,
    ) -> dict[str, Any] | None:
        """Load ``model`` into memory (pulling it first if it is not on disk).

        ``size_vram`` defaults to what fits in the node's free VRAM; ``keep_alive``
        (seconds or a Go duration, negative: forever, 0: unload) sets
        ``expires_at``; ``expires_in`` overrides the first expiry only, to
        simulate a model last used a while ago. Return its /api/ps entry.
        """
        spec = model_spec(model)
        if spec.name not in self._disk:
            self.pull(spec.name)
        keep_ns = keep_alive_ns(keep_alive, self.default_keep_alive)
        if keep_ns == 0:
            self._unload(spec.name)
            return None
        loaded = self._load(spec, keep_ns, size_vram, context_length)
        if expires_in is not None:
            loaded.expires_ns = self.clock() + int(expires_in * _NS)
        return self._ps_entry(loaded)

    @on_loop
    def unload(self, model: str) -> bool:
        """Evict ``model`` from memory; return whether it was loaded."""
        return self._unload(normalize_model_name(model))

    @on_loop
    def process(
        self, model: str, keep_alive: float | str | None = None
    ) -> dict[str, Any] | None:
        """Finish one request on ``model``: load it if needed, restart its keep-alive.

        Ollama resets a runner's expiry when a request on it finishes, to the
        request's keep_alive or, without one, the one it was loaded with.
        """
        spec = model_spec(model)
        if spec.name not in self._disk:
            raise KeyError(f"model '{spec.name}' not found")
        loaded = self._loaded_model(spec.name)
        if keep_alive is None and loaded is not None:
            keep_ns = loaded.keep_alive_ns
        else:
            keep_ns = keep_alive_ns(keep_alive, self.default_keep_alive)
        self.processed[spec.name] += 1
        if keep_ns == 0:
            self._unload(spec.name)
            return None
        loaded = self._load(spec, keep_ns, None, None)
        return self._ps_entry(loaded)

    @on_loop
    def loaded_models(self) -> list[str]:
        """Return the names /api/ps lists now."""
        return [entry["name"] for entry in self._ps_entries()]

    @on_loop
    def disk_models(self) -> list[str]:
        """Return the names /api/tags lists now."""
        return [entry["name"] for entry in self._tags_entries()]

    @on_loop
    def snapshot(self) -> dict[str, Any]:
        """Return the node's state and counters as JSON-able data."""
        return {
            "index": self.index,
            "url": self.url,
            "address": self.address,
            "alive": self.alive,
            "hanging": self.hanging,
            "delay": self.delay,
            "error": self.error_status,
            "queue_full": self.busy_queue_full,
            "version": self.version,
            "vram_total": self.vram_total,
            "models": self.disk_models(),
            "loaded": [
                {
                    key: entry.get(key)
                    for key in ("name", "size", "size_vram", "expires_at")
                }
                for entry in self._ps_entries()
            ],
            "requests": dict(self.requests),
            "requests_total": self.requests_total,
            "processed": dict(self.processed),
            "open_connections": self.open_connections,
            "connections_accepted": self.connections_accepted,
            "reset": self.resetting,
            "cut": self.cut_after,
            "generation": dataclasses.asdict(self.pace),
            "generating": self.generating,
            "queued": self.queued,
            "dropped": len(self.dropped),
        }

    # ------------------------------------------------------------- model state

    def _loaded_model(self, name: str) -> _Loaded | None:
        loaded = self._loaded.get(name)
        if loaded is not None and loaded.expires_ns <= self.clock():
            self._unload(name)  # Ollama's scheduler unloads it when it expires
            return None
        return loaded

    def _load(
        self,
        spec: ModelSpec,
        keep_ns: int,
        size_vram: int | None,
        context_length: int | None,
    ) -> _Loaded:
        now = self.clock()
        loaded = self._loaded_model(spec.name)
        expires = now + keep_ns
        if loaded is not None and size_vram is None and context_length is None:
            loaded.keep_alive_ns = keep_ns
            loaded.expires_ns = expires
        else:
            context = context_length or spec.context_length
            size = spec.memory_size(context)
            if size_vram is None:
                size_vram = self._vram_for(spec.name, size)
            if not 0 <= size_vram <= size:
                raise ValueError(f"size_vram must be between 0 and size ({size})")
            loaded = _Loaded(spec, size, size_vram, context, keep_ns, expires)
            self._loaded[spec.name] = loaded
        self._ps_cache = None
        return loaded

    def _vram_for(self, name: str, size: int) -> int:
        if self.vram_total is None:
            return size
        used = sum(m.size_vram for n, m in self._loaded.items() if n != name)
        return max(0, min(size, self.vram_total - used))

    def _unload(self, name: str) -> bool:
        self._ps_cache = None
        self._ready_at.pop(name, None)
        return self._loaded.pop(name, None) is not None

    def _tags_entry(self, spec: ModelSpec, modified_ns: int) -> dict[str, Any]:
        return {
            "name": spec.name,
            "model": spec.name,
            "modified_at": go_time(modified_ns, self.utc_offset_minutes),
            "size": spec.size,
            "digest": spec.digest,
            "details": spec.details(),
        }

    def _disk_ordered(self) -> list[tuple[ModelSpec, int]]:
        # Most recently modified first, compared by whole seconds as Ollama does.
        return sorted(self._disk.values(), key=lambda item: -(item[1] // _NS))

    def _tags_entries(self) -> list[dict[str, Any]]:
        return [self._tags_entry(spec, at) for spec, at in self._disk_ordered()]

    def _ps_entry(self, loaded: _Loaded) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": loaded.spec.name,
            "model": loaded.spec.name,
            "size": loaded.size,
            "digest": loaded.spec.digest,
            "details": loaded.spec.details(),
            "expires_at": go_time(loaded.expires_ns, self.utc_offset_minutes),
            "size_vram": loaded.size_vram,
        }
        if version_tuple(self.version) >= CONTEXT_LENGTH_SINCE:
            entry["context_length"] = loaded.context_length
        return entry

    def _ps_entries(self) -> list[dict[str, Any]]:
        for name in list(self._loaded):
            self._loaded_model(name)  # drop the expired
        # Longest time remaining first, compared by whole seconds as Ollama does.
        ordered = sorted(self._loaded.values(), key=lambda m: -(m.expires_ns // _NS))
        return [self._ps_entry(loaded) for loaded in ordered]

    # ---------------------------------------------------------------- serving

    def connection_opened(self, connection: HttpConnection) -> None:
        """Count and remember an accepted connection."""
        if connection.generation != self._generation:  # accepted before dying
            connection.abort()
            return
        self.connections_accepted += 1
        self._connections.add(connection)

    def connection_closed(self, connection: HttpConnection) -> None:
        """Forget a closed connection."""
        self._connections.discard(connection)

    def dispatch(self, request: Request) -> Outcome:
        """Count the request, then answer it now, late, never, or over time."""
        self.requests[request.path] += 1
        if self.resetting:
            return RESET
        if self.hanging:
            return HANG
        if self.delay > 0:
            return Later(self.delay)
        return self.respond(request)

    def respond(self, request: Request) -> Outcome:
        """Route ``request`` the way gin routes Ollama's, and answer it."""
        if self.hanging:
            return HANG
        if not _host_allowed(request.headers.get("host", "")):
            return Response(403)
        path, method = request.path, request.method
        methods = _methods_for(path)
        if method not in methods:
            return self._unrouted(path, method)
        if self.error_status is not None and (path != "/" or self.error_root):
            return self._error_response()
        if self.busy_queue_full and path in INFERENCE_PATHS:
            if path.startswith("/v1/"):
                return openai.writer_error(503, BUSY_MESSAGE)
            return json_response(503, {"error": BUSY_MESSAGE})
        handler = _HANDLERS.get(path)
        if handler is None and path.startswith("/v1/models/"):
            handler = SimulatedNode._v1_model
        if handler is None:
            return json_response(
                501, {"error": f"{method} {path} is not simulated by SOLLOL"}
            )
        try:
            return handler(self, request)
        except EOFError:
            return json_response(400, {"error": "missing request body"})
        except ValueError as exc:  # a body that is not JSON, or not the right JSON
            return json_response(400, {"error": str(exc)})

    def _unrouted(self, path: str, method: str) -> Response:
        if path != "/":
            # gin's RedirectTrailingSlash: /api/tags/ -> /api/tags.
            other = path[:-1] if path.endswith("/") else path + "/"
            if method in _methods_for(other):
                status = 301 if method == "GET" else 307
                body = b""
                content_type = None
                if method == "GET":  # http.Redirect writes a tiny page for GET
                    body = f'<a href="{other}">Moved Permanently</a>.\n\n'.encode()
                    content_type = "text/html; charset=utf-8"
                return Response(status, body, content_type, (("Location", other),))
        allowed = [m for m in _METHOD_ORDER if m in _methods_for(path)]
        if allowed:
            return Response(
                405,
                b"405 method not allowed",
                "text/plain",
                (("Allow", ", ".join(allowed)),),
            )
        return Response(404, b"404 page not found", "text/plain")

    def _error_response(self) -> Response:
        status = self.error_status
        assert status is not None
        if self.error_message is not None:
            message = self.error_message
        elif status == 503:
            message = BUSY_MESSAGE
        else:
            message = HTTPStatus(status).phrase.lower() if status in STATUSES else ""
        return json_response(status, {"error": message})

    def _root(self, request: Request) -> Response:
        return Response(200, b"Ollama is running", TEXT)

    def _version(self, request: Request) -> Response:
        return json_response(200, {"version": self.version})

    def _tags(self, request: Request) -> Response:
        if self._tags_cache is None:
            self._tags_cache = go_json({"models": self._tags_entries()})
        return Response(200, self._tags_cache, JSON)

    def _ps(self, request: Request) -> Response:
        now = self.clock()
        cached = self._ps_cache
        if cached is None or cached[1] <= now:
            entries = self._ps_entries()
            soonest = min((m.expires_ns for m in self._loaded.values()), default=0)
            cached = (go_json({"models": entries}), soonest or FOREVER_NS)
            self._ps_cache = cached
        return Response(200, cached[0], JSON)

    def _request_model(self, request: Request) -> tuple[dict[str, Any], ModelSpec]:
        payload = _payload(request)
        name = payload.get("model") or payload.get("name") or ""
        if not isinstance(name, str) or not name:
            raise ValueError("model is required")
        return payload, model_spec(name)

    def _not_found(self, spec: ModelSpec) -> Response:
        return json_response(404, {"error": f"model '{spec.name}' not found"})

    def _pull(self, request: Request) -> Response:
        payload, spec = self._request_model(request)
        self.pull(spec.name)
        if payload.get("stream") is False:
            return json_response(200, {"status": "success"})
        steps: list[dict[str, Any]] = [
            {"status": "pulling manifest"},
            {
                "status": f"pulling {spec.digest[:12]}",
                "digest": f"sha256:{spec.digest}",
                "total": spec.size,
                "completed": spec.size,
            },
            {"status": "verifying sha256 digest"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]
        return Response(200, content_type=NDJSON, chunks=_ndjson(steps))

    def _delete(self, request: Request) -> Response:
        _, spec = self._request_model(request)
        if not self.delete(spec.name):
            return self._not_found(spec)
        return Response(200)

    def _show(self, request: Request) -> Response:
        _, spec = self._request_model(request)
        if spec.name not in self._disk:
            return self._not_found(spec)
        modified = self._disk[spec.name][1]
        parameters = int(float(spec.parameter_size[:-1]) * _unit(spec.parameter_size))
        return json_response(
            200,
            {
                "modelfile": f'# Modelfile generated by "ollama show"\n'
                f"FROM {spec.name}\n",
                "parameters": f"num_ctx                        {spec.context_length}",
                "template": "{{ .Prompt }}",
                "details": spec.details(),
                "model_info": {
                    "general.architecture": spec.family,
                    "general.parameter_count": parameters,
                    f"{spec.family}.context_length": max(spec.context_length, 8192),
                },
                "capabilities": ["embedding"] if spec.embedding else ["completion"],
                "modified_at": go_time(modified, self.utc_offset_minutes),
            },
        )

    # ------------------------------------------------------------- inference

    def _generate(self, request: Request) -> Response | Work:
        return self._infer(_payload(request), chat=False)

    def _chat(self, request: Request) -> Response | Work:
        return self._infer(_payload(request), chat=True)

    def _infer(
        self, payload: dict[str, Any], *, chat: bool, writer: Any = None
    ) -> Response | Work:
        """Run /api/chat or /api/generate; ``writer`` (default: native) writes it."""
        kind = "chat" if chat else "generate"
        name = payload.get("model") or ""
        _go_field(name, str, f"{kind.title()}Request.model", "string")
        prompt = payload.get("messages") if chat else payload.get("prompt")
        if chat:
            _go_field(prompt, list, "ChatRequest.messages", "[]api.Message")
        else:
            _go_field(prompt, str, "GenerateRequest.prompt", "string")
        if writer is None:
            writer = NativeWriter(name, chat=chat)
        if not name:
            if chat:
                return writer.error(400, "model is required")
            return writer.error(404, "model '' not found")
        spec = model_spec(name)
        if spec.name not in self._disk:
            return writer.error(404, f"model '{name}' not found")
        keep_alive = payload.get("keep_alive")
        keep_ns = keep_alive_ns(keep_alive, self.default_keep_alive)
        stream = payload.get("stream") is not False
        if not prompt and keep_alive is not None and keep_ns == 0:
            self._unload(spec.name)  # `ollama stop`
            return self._single(writer, stream, self._reply(name, chat, "", "unload"))
        if spec.embedding:
            return writer.error(400, f"{_go_quote(name)} does not support {kind}")
        if self._slots.full():
            return writer.error(503, BUSY_MESSAGE)
        if not prompt:  # load only, as `ollama run` does first
            return self._load_only(
                spec,
                keep_ns,
                lambda _: self._single(
                    writer, stream, self._reply(name, chat, "", "load")
                ),
            )
        count = _num_predict(payload.get("options"))
        tokens = self._reply_tokens(spec, count)
        reason = "length" if count else "stop"
        prompt_tokens = _prompt_tokens(payload, chat)
        was_loaded = self._loaded_model(spec.name) is not None

        def answer(text: str, timing: Timing) -> dict[str, Any]:
            extra = {} if chat else {"context": _context(prompt_tokens + len(tokens))}
            reply = self._reply(name, chat, text, reason, **extra)
            return reply | self._metrics(timing, was_loaded, prompt_tokens, len(tokens))

        assert self._loop is not None
        work = Generation(
            self._slots,
            self._loop,
            writer=writer,
            tokens=tokens,
            stream=stream,
            answer=answer,
            prepare=lambda now: self._prepare(spec, keep_ns, now),
            finished=lambda: self._finished(spec.name, keep_alive),
            clock=self.clock,
            cut=self.cut_after,
        )
        if self._at_once(spec, tokens=True) and (not stream or self.cut_after is None):
            return work.at_once()
        return work

    def _single(self, writer: Any, stream: bool, answer: dict[str, Any]) -> Response:
        """Return one answer written at once (c.JSON), as an OpenAI writer sees it."""
        if stream and not isinstance(writer, NativeWriter):
            return Response(200, writer.final(answer), openai.EVENT_STREAM)
        return writer.whole(answer)

    def _reply(
        self, model: str, chat: bool, text: str, reason: str, **extra: Any
    ) -> dict[str, Any]:
        """Return a ``done`` ChatResponse or GenerateResponse, fields in Go's order."""
        reply: dict[str, Any] = {
            "model": model,
            "created_at": utc_stamp(self.clock()).decode(),
        }
        if chat:
            reply["message"] = {"role": "assistant", "content": text}
            if version_tuple(self.version) >= DONE_FIRST_SINCE:
                reply["done"] = True
                reply["done_reason"] = reason
            else:
                reply["done_reason"] = reason
                reply["done"] = True
        else:
            reply["response"] = text
            reply["done"] = True
            reply["done_reason"] = reason
        reply.update(extra)
        return reply

    def _metrics(
        self, timing: Timing, was_loaded: bool, prompt_tokens: int, tokens: int
    ) -> dict[str, int]:
        """Return the duration fields: nominal at once, else what it took."""
        if not timing.paced:
            load = 2_000_000 if was_loaded else 1_500_000_000
            return {
                "total_duration": 250_000_000 + load,
                "load_duration": load,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 40_000_000,
                "eval_count": tokens,
                "eval_duration": 200_000_000,
            }
        assert self._loop is not None
        load_ns = int(timing.load * _NS) or 2_000_000
        prompt_ns = int(timing.first_token * _NS) or prompt_tokens * 100_000
        eval_ns = max(int(timing.generating() * _NS), 1)
        measured = int((self._loop.time() - timing.arrived) * _NS)
        return {
            # Ollama's total holds its parts; the loop's clock, read a hair
            # early, must not make it shorter than they are.
            "total_duration": max(measured, load_ns + prompt_ns + eval_ns),
            "load_duration": load_ns,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": tokens,
            "eval_duration": eval_ns,
        }

    def _reply_tokens(self, spec: ModelSpec, count: int | None) -> list[str]:
        """Return the reply's tokens: the usual sentence, or exactly ``count``."""
        words = f"Simulated reply from {self.address} by {spec.name}.".split()
        natural = [words[0], *(" " + word for word in words[1:])]
        if count is None or count <= len(natural):
            return natural[:count]
        more = count - len(natural)
        return natural + [_FILLER[i % len(_FILLER)] for i in range(more)]

    def _at_once(self, spec: ModelSpec, *, tokens: bool) -> bool:
        """Return whether a request can be answered now, taking no simulated time."""
        pace = self.pace
        if not self._slots.free() or (tokens and (pace.token_rate or pace.first_token)):
            return False
        return self._ready_now(spec)

    def _ready_now(self, spec: ModelSpec) -> bool:
        """Return whether ``spec`` needs no time to load (loaded, or no load time)."""
        if not self.pace.load_seconds:
            return True
        assert self._loop is not None
        ready = self._ready_at.get(spec.name, 0.0)
        return self._loaded_model(spec.name) is not None and ready <= self._loop.time()

    def _prepare(self, spec: ModelSpec, keep_ns: int, now: float) -> float:
        """Load ``spec`` if it is not loaded; return the seconds until it is ready."""
        if self._loaded_model(spec.name) is not None:
            return max(0.0, self._ready_at.get(spec.name, now) - now)
        keep = keep_ns if keep_ns > 0 else keep_alive_ns(None, self.default_keep_alive)
        self._load(spec, keep, None, None)
        wait = self.pace.load_seconds
        if wait:
            self._ready_at[spec.name] = now + wait
        return wait

    def _finished(self, name: str, keep_alive: Any) -> None:
        if name in self._disk:  # not deleted meanwhile
            self.process(name, keep_alive=keep_alive)

    def _load_only(
        self,
        spec: ModelSpec,
        keep_ns: int,
        respond: Callable[[Timing | None], Response],
    ) -> Response | Work:
        if self._ready_now(spec):  # it needs no slot, only the model
            self._load(spec, keep_ns, None, None)
            return respond(None)
        assert self._loop is not None
        return Work(
            self._slots,
            self._loop,
            prepare=lambda now: self._prepare(spec, keep_ns, now),
            respond=respond,
            needs_slot=False,
        )

    def _embed(self, request: Request) -> Response | Work:
        return self._embed_with(_payload(request), None)

    def _embed_with(self, payload: dict[str, Any], writer: Any) -> Response | Work:
        """Run /api/embed; ``writer`` (None: native) writes the answer."""
        name = payload.get("model") or ""
        _go_field(name, str, "EmbedRequest.model", "string")
        inputs = payload.get("input")
        if isinstance(inputs, str):
            texts = [inputs] if inputs else []
        elif isinstance(inputs, list) and all(isinstance(t, str) for t in inputs):
            texts = list(inputs)
        elif inputs is None:
            texts = []
        else:
            return _fail(writer, 400, "invalid input type")
        spec = model_spec(name) if name else None
        if spec is None or spec.name not in self._disk:
            return _fail(writer, 404, f"model '{name}' not found")
        if self._slots.full():
            return _fail(writer, 503, BUSY_MESSAGE)
        keep_alive = payload.get("keep_alive")
        keep_ns = keep_alive_ns(keep_alive, self.default_keep_alive)
        dims = payload.get("dimensions")
        size = spec.embedding_length or 768
        if isinstance(dims, int) and 0 < dims < size:
            size = dims

        def respond(timing: Timing | None) -> Response:
            answer: dict[str, Any] = {"model": name, "embeddings": []}
            if texts:
                answer["embeddings"] = [_embedding(text, size) for text in texts]
                if timing is None or not timing.paced:
                    answer["total_duration"] = 14_143_917
                    answer["load_duration"] = 1_019_500
                else:
                    assert self._loop is not None
                    elapsed = self._loop.time() - timing.arrived
                    answer["total_duration"] = max(int(elapsed * _NS), 1)
                    answer["load_duration"] = int(timing.load * _NS) or 1_019_500
                answer["prompt_eval_count"] = sum(_token_count(t) for t in texts)
            if writer is None:
                return json_response(200, answer)
            return cast(Response, writer.whole(answer))

        return self._timed(spec, keep_ns, keep_alive, respond)

    def _timed(
        self,
        spec: ModelSpec,
        keep_ns: int,
        keep_alive: Any,
        respond: Callable[[Timing | None], Response],
    ) -> Response | Work:
        """Answer now when nothing needs simulated time, else once loaded."""
        if self._at_once(spec, tokens=False):
            response = respond(None)
            self._finished(spec.name, keep_alive)
            return response
        assert self._loop is not None
        return Work(
            self._slots,
            self._loop,
            prepare=lambda now: self._prepare(spec, keep_ns, now),
            respond=respond,
            finished=lambda: self._finished(spec.name, keep_alive),
        )

    def _embeddings(self, request: Request) -> Response | Work:
        """Run the legacy /api/embeddings: one prompt, float64 values."""
        payload = _payload(request)
        name = payload.get("model") or ""
        _go_field(name, str, "EmbeddingRequest.model", "string")
        prompt = payload.get("prompt") or ""
        _go_field(prompt, str, "EmbeddingRequest.prompt", "string")
        if not name:
            return json_response(400, {"error": "model is required"})
        spec = model_spec(name)
        if spec.name not in self._disk:
            message = f"model {_go_quote(name)} not found, try pulling it first"
            return json_response(404, {"error": message})
        if self._slots.full():
            return json_response(503, {"error": BUSY_MESSAGE})
        keep_alive = payload.get("keep_alive")
        keep_ns = keep_alive_ns(keep_alive, self.default_keep_alive)
        size = spec.embedding_length or 768

        def respond(timing: Timing | None) -> Response:
            if not prompt:  # "an empty request loads the model"
                return json_response(200, {"embedding": []})
            vector = [_float64_of_float32(v) for v in _embedding(prompt, size)]
            return json_response(200, {"embedding": vector})

        return self._timed(spec, keep_ns, keep_alive, respond)

    # ----------------------------------------------------------- OpenAI (/v1)

    def _v1_chat(self, request: Request) -> Response | Work:
        try:
            payload, writer = openai.chat_request(openai.read_body(request.json))
        except openai.Refused as refused:
            return refused.response
        return self._infer(payload, chat=True, writer=writer)

    def _v1_completions(self, request: Request) -> Response | Work:
        try:
            payload, writer = openai.completion_request(openai.read_body(request.json))
        except openai.Refused as refused:
            return refused.response
        return self._infer(payload, chat=False, writer=writer)

    def _v1_embeddings(self, request: Request) -> Response | Work:
        try:
            payload, writer = openai.embed_request(openai.read_body(request.json))
        except openai.Refused as refused:
            return refused.response
        return self._embed_with(payload, writer)

    def _v1_models(self, request: Request) -> Response:
        return openai.model_list(
            [(spec.name, modified // _NS) for spec, modified in self._disk_ordered()]
        )

    def _v1_model(self, request: Request) -> Response:
        name = request.path[len("/v1/models/") :]
        spec = model_spec(name)
        if spec.name not in self._disk:
            return openai.writer_error(404, f"model '{spec.name}' not found")
        return openai.model_entry(name, self._disk[spec.name][1] // _NS)


class NativeWriter:
    """``/api/chat`` and ``/api/generate`` as Ollama writes them: NDJSON or JSON.

    A streamed token's line is pre-encoded but for its time stamp (Ollama stamps
    every chunk with ``time.Now().UTC()``); the writers of ``simulator.openai``
    translate the same answers for ``/v1``.
    """

    __slots__ = ("prefix", "suffixes", "build")

    _chat: dict[str, bytes] = {}
    _generate: dict[str, bytes] = {}

    def __init__(self, model: str, *, chat: bool) -> None:
        self.prefix = b'{"model":' + go_json(model) + b',"created_at":"'
        if chat:
            self.suffixes = NativeWriter._chat
            self.build = _chat_suffix
        else:
            self.suffixes = NativeWriter._generate
            self.build = _generate_suffix

    def head(self) -> Response:
        """Return the head of a stream (its body goes out chunk by chunk)."""
        return Response(200, content_type=NDJSON, chunks=[])

    def token(self, text: str, ns: int) -> bytes:
        """Return the NDJSON line of one token, stamped ``ns``."""
        suffix = self.suffixes.get(text)
        if suffix is None:
            if len(self.suffixes) >= 8192:  # replies draw on a small vocabulary
                self.suffixes.clear()
            suffix = self.suffixes[text] = self.build(text)
        return b"".join((self.prefix, utc_stamp(ns), suffix))

    def final(self, answer: dict[str, Any]) -> bytes:
        """Return the last line of a stream: the ``done`` answer."""
        return go_json(answer) + b"\n"

    def whole(self, answer: dict[str, Any]) -> Response:
        """Return a non-streamed answer (gin's c.JSON)."""
        return json_response(200, answer)

    def error(self, status: int, message: str) -> Response:
        """Return a native error."""
        return json_response(status, {"error": message})


def _chat_suffix(text: str) -> bytes:
    return (
        b'","message":{"role":"assistant","content":'
        + go_json(text)
        + b'},"done":false}\n'
    )


def _generate_suffix(text: str) -> bytes:
    return b'","response":' + go_json(text) + b',"done":false}\n'


_FILLER = tuple(
    " " + word
    for word in (
        "and so the simulated node goes on, one token after another, saying "
        "nothing much while the clock runs"
    ).split()
)


def _payload(request: Request) -> dict[str, Any]:
    payload = request.json()
    if not isinstance(payload, dict):
        raise ValueError("json: cannot unmarshal into Go value of type api.Request")
    return payload


def _go_field(value: Any, kind: type, field: str, go_type: str) -> None:
    """Refuse a field of the wrong type with encoding/json's words (then: 400)."""
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return
    if isinstance(value, bool):
        what = "bool"
    elif isinstance(value, int | float):
        what = "number"
    elif isinstance(value, str):
        what = "string"
    else:
        what = "array" if isinstance(value, list) else "object"
    raise ValueError(
        f"json: cannot unmarshal {what} into Go struct field {field} of type {go_type}"
    )


def _go_quote(text: str) -> str:
    """Return ``%q`` of ``text`` (strconv.Quote), for plain names."""
    return json.dumps(text, ensure_ascii=False)


def _fail(writer: Any, status: int, message: str) -> Response:
    if writer is None:
        return json_response(status, {"error": message})
    return cast(Response, writer.error(status, message))


def _num_predict(options: Any) -> int | None:
    """Return ``options.num_predict`` when it asks for a number of tokens."""
    if not isinstance(options, dict):
        return None
    value = options.get("num_predict")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _token_count(text: str) -> int:
    """Return a tokenizer's count, roughly: a token per 4 characters, at least 1."""
    return max(1, (len(text) + 3) // 4)


def _prompt_tokens(payload: dict[str, Any], chat: bool) -> int:
    if chat:
        texts = [
            message.get("content")
            for message in payload.get("messages") or []
            if isinstance(message, dict)
        ]
    else:
        texts = [payload.get("system"), payload.get("prompt")]
    return _token_count("".join(text for text in texts if isinstance(text, str)))


def _context(count: int) -> list[int]:
    """Return ``count`` token ids: the prompt and reply, as /api/generate returns."""
    return [(i * 7919) % 32000 + 1 for i in range(count)]


def _ndjson(items: Iterable[Any]) -> list[bytes]:
    return [go_json(item) + b"\n" for item in items]


def _unit(parameter_size: str) -> int:
    return {"M": 10**6, "B": 10**9, "K": 10**3}.get(parameter_size[-1:], 1)


def _embedding(text: str, dims: int) -> list[float]:
    """Return a deterministic vector whose values Go and Python print alike.

    Magnitudes from 0.0001 up, 7 decimals: no exponent in either language, and
    as float32 the same shortest digits.
    """
    generator = random.Random(hashlib.sha256(str(text).encode()).digest())
    return [
        round(generator.choice((-1, 1)) * generator.uniform(0.0001, 0.1), 7)
        for _ in range(dims)
    ]


def _float64_of_float32(value: float) -> float:
    """Return ``float64(float32(value))``, as the legacy endpoint converts it."""
    return cast(float, struct.unpack("<f", struct.pack("<f", value))[0])


_HANDLERS: dict[str, Callable[[SimulatedNode, Request], Response | Work]] = {
    "/": SimulatedNode._root,
    "/api/version": SimulatedNode._version,
    "/api/tags": SimulatedNode._tags,
    "/api/ps": SimulatedNode._ps,
    "/api/pull": SimulatedNode._pull,
    "/api/delete": SimulatedNode._delete,
    "/api/show": SimulatedNode._show,
    "/api/generate": SimulatedNode._generate,
    "/api/chat": SimulatedNode._chat,
    "/api/embed": SimulatedNode._embed,
    "/api/embeddings": SimulatedNode._embeddings,
    "/v1/chat/completions": SimulatedNode._v1_chat,
    "/v1/completions": SimulatedNode._v1_completions,
    "/v1/embeddings": SimulatedNode._v1_embeddings,
    "/v1/models": SimulatedNode._v1_models,
}


# ------------------------------------------------------------------------ fleet

_GPU_PROFILES: tuple[tuple[int, int], ...] = (  # (VRAM bytes, weight); 0: CPU only
    (0, 2),
    (8 * GIB, 3),
    (12 * GIB, 3),
    (16 * GIB, 3),
    (24 * GIB, 4),
    (48 * GIB, 1),
)
_UTC_OFFSETS = (0, 0, 0, 60, 120, -300, -420, 330, 540)  # minutes; most run UTC


def _fd_headroom(needed: int) -> None:
    """Raise the soft open-files limit so 1,000 listening sockets fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Fleet:
    """N simulated nodes on consecutive loopback addresses or ports.

    ``layout="hosts"`` (default) puts node i on ``base + i`` at ``port``, like a
    LAN of Ollama machines; ``layout="ports"`` puts every node on ``base`` at
    ``port + i``. ``port=0`` gives each node a free port of its own, so parallel
    test runs never collide. Each node gets a deterministic (by ``seed`` and
    index), varied set of models; about half have one or two loaded.
    """

    def __init__(
        self,
        n: int,
        *,
        base: str = "127.0.0.2",
        port: int = DEFAULT_PORT,
        layout: str = "hosts",
        seed: int = 0,
        versions: Sequence[str] = (DEFAULT_VERSION,),
        control_host: str = "127.0.0.1",
        control_port: int | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if n < 0:
            raise ValueError("a fleet has zero or more nodes")
        if layout not in ("hosts", "ports"):
            raise ValueError("layout is 'hosts' or 'ports'")
        first = ipaddress.ip_address(base)
        self.nodes: list[SimulatedNode] = []
        for index in range(n):
            if layout == "hosts":
                host, node_port = str(first + index), port
            else:
                host, node_port = base, (port + index if port else 0)
            _require_loopback(host)
            self.nodes.append(
                self._make_node(index, host, node_port, seed, versions, clock)
            )
        _require_loopback(control_host)
        self.control_host = control_host
        self.control_port = control_port
        self._control: Listener | None = None
        self._control_site: _ControlSite | None = None
        # Simulated RPC backends (simulator.rpc) the control server
        # shows and drives; whoever starts them stops them.
        self.rpc_servers: list[Any] = []

    @staticmethod
    def _make_node(
        index: int,
        host: str,
        port: int,
        seed: int,
        versions: Sequence[str],
        clock: Callable[[], int],
    ) -> SimulatedNode:
        chooser = random.Random(f"{seed}:{index}")
        vram = chooser.choices(
            [v for v, _ in _GPU_PROFILES], [w for _, w in _GPU_PROFILES]
        )[0]
        fits = [
            name
            for name in CHAT_MODELS
            if CATALOG[name].size < max(vram, 16 * GIB) * 0.9
        ]
        models = chooser.sample(fits, k=chooser.randint(2, 5))
        if chooser.random() < 0.7:
            models.append(chooser.choice(EMBEDDING_MODELS))
        node = SimulatedNode(
            host,
            port,
            version=versions[index % len(versions)],
            models=models,
            vram_total=vram,
            utc_offset_minutes=chooser.choice(_UTC_OFFSETS),
            index=index,
            clock=clock,
        )
        loaded = chooser.choices([0, 1, 2], [5, 4, 1])[0]
        for name in chooser.sample(models, k=loaded):
            node.load(name, expires_in=chooser.uniform(60, DEFAULT_KEEP_ALIVE))
        return node

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index: int) -> SimulatedNode:
        return self.nodes[index]

    @property
    def urls(self) -> list[str]:
        """Return every node's base URL, in node order."""
        return [node.url for node in self.nodes]

    @property
    def control_url(self) -> str | None:
        """Return the control server's URL once it listens, else None."""
        if self._control is None:
            return None
        return f"http://{self.control_host}:{self.control_port}"

    def node(self, key: int | str) -> SimulatedNode:
        """Return a node by index, URL or ``host:port``."""
        if isinstance(key, int):
            return self.nodes[key]
        for node in self.nodes:
            if key in (node.url, node.address, node.url + "/"):
                return node
        raise KeyError(key)

    async def start(self) -> None:
        """Start every node (and the control server, if a port was given)."""
        _fd_headroom(2 * len(self.nodes) + 512)
        try:
            for node in self.nodes:
                await node.start()
            if self.control_port is not None:
                site = _ControlSite(self)
                self._control_site = site
                self._control = Listener(
                    asyncio.get_running_loop(),
                    self.control_host,
                    self.control_port,
                    lambda: HttpConnection(site),
                )
                self.control_port = self._control.port
        except BaseException:
            await self.stop()  # an address in use: leave nothing half-started
            raise

    async def stop(self) -> None:
        """Stop the control server and every node."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._control_site is not None:
            for connection in list(self._control_site.connections):
                connection.abort()
        for node in self.nodes:
            node.die()
        await asyncio.sleep(0)

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# ------------------------------------------------------------- control surface

_NODE_ACTION = re.compile(r"^/nodes/(\d+|all)/([a-z_]+)$")
_RPC_ACTION = re.compile(r"^/rpc/(\d+|all)/([a-z_]+)$")
_RPC_ACTIONS = ("die", "revive", "attach", "detach")


class _ControlSite(Site):
    """JSON control of a fleet for other processes (demos, benchmarks, live tests).

    ``GET /health``, ``GET /nodes``, ``GET /nodes/<i>``, and ``POST
    /nodes/<i|all>/<action>`` with a JSON body where the action takes one: ``die``,
    ``revive``, ``hang`` ``{"on"}``, ``unhang``, ``slow`` ``{"seconds"}``,
    ``error`` ``{"status", "message", "root"}``, ``queue_full`` ``{"on"}`` (503
    "server busy" to inference only), ``reset`` ``{"on"}`` (read a request, then
    TCP RST), ``cut`` ``{"after"}`` (abort streams after that many chunks; null:
    don't), ``generation`` ``{"token_rate", "first_token", "load_seconds",
    "num_parallel", "max_queue"}`` (``set_generation``: what is left out returns
    to its default), ``heal`` (every fault, not the generation settings),
    ``reset_counters``,
    ``load`` ``{"model", "size_vram", "keep_alive", "context_length"}``,
    ``unload``/``process``/``pull``/``delete`` ``{"model"}``. RPC backends, when
    the fleet has any: ``GET /rpc`` and ``POST /rpc/<i|all>/<action>`` with
    ``die``, ``revive``, ``attach`` (busy with another client), ``detach``.
    """

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.connections: set[HttpConnection] = set()

    def connection_opened(self, connection: HttpConnection) -> None:
        """Remember a connection, to drop it at stop."""
        self.connections.add(connection)

    def connection_closed(self, connection: HttpConnection) -> None:
        """Forget a closed connection."""
        self.connections.discard(connection)

    def respond(self, request: Request) -> Response:
        """Answer one control request."""
        try:
            return self._respond(request)
        except (KeyError, IndexError) as exc:
            return json_response(404, {"error": f"not found: {exc}"})
        except (ValueError, TypeError, EOFError) as exc:
            return json_response(400, {"error": str(exc) or type(exc).__name__})

    def _respond(self, request: Request) -> Response:
        path, method = request.path.rstrip("/") or "/", request.method
        nodes = self.fleet.nodes
        if path in ("/", "/health") and method in ("GET", "HEAD"):
            alive = sum(node.alive for node in nodes)
            return json_response(200, {"ok": True, "nodes": len(nodes), "alive": alive})
        if path == "/nodes" and method in ("GET", "HEAD"):
            return json_response(200, {"nodes": [n.snapshot() for n in nodes]})
        match = re.fullmatch(r"/nodes/(\d+)", path)
        if match and method in ("GET", "HEAD"):
            return json_response(200, nodes[int(match[1])].snapshot())
        if path == "/rpc" and method in ("GET", "HEAD"):
            servers = self.fleet.rpc_servers
            return json_response(200, {"rpc": [_rpc_state(s) for s in servers]})
        if _RPC_ACTION.match(path):
            return self._rpc_action(request, path)
        match = _NODE_ACTION.match(path)
        if match is None:
            return json_response(404, {"error": f"no such control path {path}"})
        if method != "POST":
            return json_response(
                405, {"error": "use POST"}, headers=(("Allow", "POST"),)
            )
        target, action = match[1], match[2]
        args = request.json() if request.body.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("the body is a JSON object")
        chosen = nodes if target == "all" else [nodes[int(target)]]
        results = [self._act(node, action, args) for node in chosen]
        if target == "all":
            return json_response(200, {"nodes": results})
        return json_response(200, results[0])

    def _rpc_action(self, request: Request, path: str) -> Response:
        if request.method != "POST":
            return json_response(
                405, {"error": "use POST"}, headers=(("Allow", "POST"),)
            )
        match = _RPC_ACTION.match(path)
        assert match is not None
        target, action = match[1], match[2]
        if action not in _RPC_ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {_RPC_ACTIONS}")
        servers = self.fleet.rpc_servers
        chosen = servers if target == "all" else [servers[int(target)]]
        for server in chosen:
            getattr(server, action)()
        states = [_rpc_state(server) for server in chosen]
        if target == "all":
            return json_response(200, {"rpc": states})
        return json_response(200, states[0])

    @staticmethod
    def _act(node: SimulatedNode, action: str, args: dict[str, Any]) -> dict[str, Any]:
        model = args.get("model")
        if action in ("load", "unload", "process", "pull", "delete"):
            if not isinstance(model, str) or not model:
                raise ValueError(f'{action} needs {{"model": "name"}}')
        result: Any = None
        if action == "die":
            node.die()
        elif action == "revive":
            node.revive()
        elif action == "hang":
            node.hang(bool(args.get("on", True)))
        elif action == "unhang":
            node.hang(False)
        elif action == "slow":
            node.set_delay(float(args.get("seconds", 0)))
        elif action == "error":
            status = args.get("status", 503)
            node.set_error(
                None if status is None else int(status),
                message=args.get("message"),
                root=bool(args.get("root", False)),
            )
        elif action == "queue_full":
            node.set_queue_full(bool(args.get("on", True)))
        elif action == "reset":
            node.set_reset(bool(args.get("on", True)))
        elif action == "cut":
            after = args.get("after")
            node.set_cut(None if after is None else int(after))
        elif action == "generation":
            node.set_generation(**args)
        elif action == "heal":
            node.heal()
        elif action == "reset_counters":
            node.reset_counters()
        elif action == "load":
            result = node.load(
                model,  # type: ignore[arg-type]
                size_vram=args.get("size_vram"),
                keep_alive=args.get("keep_alive"),
                context_length=args.get("context_length"),
            )
        elif action == "unload":
            result = node.unload(model)  # type: ignore[arg-type]
        elif action == "process":
            result = node.process(model, args.get("keep_alive"))  # type: ignore[arg-type]
        elif action == "pull":
            result = node.pull(model)  # type: ignore[arg-type]
        elif action == "delete":
            result = node.delete(model)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown action {action!r}")
        return {"node": node.snapshot(), "result": result}


def _rpc_state(server: Any) -> dict[str, Any]:
    return {
        "address": getattr(server, "address", None),
        "protocol": getattr(server, "protocol", None),
        "alive": getattr(server, "alive", None),
        "attached": getattr(server, "attached", None),
        "devices": [list(device) for device in getattr(server, "devices", [])],
        "connections_accepted": getattr(server, "connections_accepted", None),
    }


# ----------------------------------------------------------- threads and loops


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a uvloop loop when uvloop is installed (cheaper at 1,000 nodes)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@contextlib.contextmanager
def running_fleet(n: int = 3, **options: Any) -> Iterator[Fleet]:
    """Run a ``Fleet`` on a background thread's loop for synchronous code.

    The node control methods (``die``, ``load``, …) are thread-safe: from this
    thread they are run on the fleet's loop and return once done.
    """
    fleet = Fleet(n, **options)
    loop = new_event_loop()
    thread = threading.Thread(
        target=loop.run_forever, name="sollol-simulated-fleet", daemon=True
    )
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fleet.start(), loop).result(timeout=120)
        yield fleet
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(fleet.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()


__all__ = [
    "BUSY_MESSAGE",
    "CATALOG",
    "DEFAULT_VERSION",
    "Fleet",
    "ModelSpec",
    "Pace",
    "Request",
    "Response",
    "SimulatedNode",
    "go_time",
    "keep_alive_ns",
    "model_spec",
    "new_event_loop",
    "normalize_model_name",
    "running_fleet",
]

"""Inference servers other than Ollama, read through what each really exposes.

llama.cpp's llama-server: /health, /props (slots, context, build), /v1/models,
/slots (each slot busy or idle; on by default since 2025, 501 when off) and
/metrics (`llamacpp:` families; only with --metrics, 501 otherwise). vLLM,
SGLang, TGI, LM Studio, LocalAI and any other OpenAI-compatible server:
/v1/models and, where it answers, Prometheus /metrics, whose families are named
per kind in METRICS. Names and shapes are those of each project's source
(llama.cpp tools/server, vllm/v1/metrics, sglang/srt/metrics/collector.py,
text-generation-inference router/src).

What is read becomes a NodeProbe like Ollama's: the models served as its
loaded (and disk) models, and `serving` (gauges: slots, requests running and
waiting, KV-cache use) and `counters` (prompt and generated tokens so far)
from which recording makes rates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from core import httpclient, jsonio
from core.jsonio import storable

# A metrics page larger than this is not read (a 50 MB page would cost the
# round more than every other node's probe); the node is still probed.
MAX_METRICS_BODY = 2 * 1024 * 1024


@dataclass(frozen=True)
class Families:
    """Which metric families of a kind say what (first found wins; summed over
    their label sets, e.g. vLLM's per model_name and engine)."""

    running: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    kv_cache: tuple[str, ...] = ()  # a ratio 0..1
    prompt_tokens: tuple[str, ...] = ()  # counters
    generated_tokens: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every family name it reads (a counter's lines add _total to it)."""
        return (
            *self.running,
            *self.waiting,
            *self.kv_cache,
            *self.prompt_tokens,
            *self.generated_tokens,
        )


METRICS: dict[str, Families] = {
    "llamacpp": Families(
        running=("llamacpp:requests_processing",),
        waiting=("llamacpp:requests_deferred",),
        # Gone from llama.cpp since mid-2025; read where an older server has it.
        kv_cache=("llamacpp:kv_cache_usage_ratio",),
        prompt_tokens=("llamacpp:prompt_tokens",),
        generated_tokens=("llamacpp:tokens_predicted",),
    ),
    "vllm": Families(
        running=("vllm:num_requests_running",),
        waiting=("vllm:num_requests_waiting",),
        # Renamed in vLLM's v1 engine; older servers say gpu_cache_usage_perc.
        kv_cache=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        prompt_tokens=("vllm:prompt_tokens",),
        generated_tokens=("vllm:generation_tokens",),
    ),
    "sglang": Families(
        running=("sglang:num_running_reqs",),
        waiting=("sglang:num_queue_reqs",),
        kv_cache=("sglang:token_usage",),
        prompt_tokens=("sglang:prompt_tokens",),
        generated_tokens=("sglang:generation_tokens",),
    ),
    "tgi": Families(
        running=("tgi_batch_current_size",),
        waiting=("tgi_queue_size",),
    ),
}


class MetricsError(ValueError):
    """A metrics page that cannot be read."""


def read_metrics(text: str, families: Families) -> tuple[dict, dict]:
    """Return (gauges, counters) that a Prometheus text page says, by our names.

    prometheus_client's parser strips a counter's `_total`, so the families name
    counters without it. NaN and infinite samples are left out; a negative
    counter or gauge is refused (no server counts below zero).
    """
    # Only the lines of the families asked for go to the parser (and their TYPE
    # lines): it reads ~10 µs a line, and a vLLM page has hundreds of histogram
    # lines this does not need (bench/servers.py: a 70 KB page, 60 ms whole).
    names = families.names()
    # Every line of the format ends in a newline: what follows the last one is
    # a line cut short (half a number is not a number), and is left out.
    text = text[: text.rfind("\n") + 1]
    kept = "\n".join(
        line
        for line in text.splitlines()
        if line.startswith(names)
        or (line.startswith("# TYPE ") and line[7:].startswith(names))
    )
    # Samples by family: an untyped family's label sets come as families of one
    # sample each, under the same name.
    found: dict[str, list] = {}
    try:
        for family in text_string_to_metric_families(kept):
            found.setdefault(family.name, []).extend(family.samples)
    except Exception as exc:  # the parser raises ValueError, TypeError, ...
        raise MetricsError(f"the metrics page does not parse: {exc}"[:300]) from None
    if not found:
        raise MetricsError(
            f"none of {', '.join(names[:3])}... is on the metrics page"[:300]
        )

    def total(names: tuple[str, ...]) -> float | None:
        for name in names:
            # A counter with no TYPE line keeps its _total in its family's name.
            samples = [*found.get(name, ()), *found.get(f"{name}_total", ())]
            values = [
                sample.value
                for sample in samples
                if sample.name in (name, f"{name}_total")
                and not math.isnan(sample.value)
                and not math.isinf(sample.value)
            ]
            if not values:
                continue
            if any(value < 0 for value in values):
                raise MetricsError(f"{name} is negative")
            return sum(values)
        return None

    gauges = {
        key: value
        for key, names in (
            ("requests_running", families.running),
            ("requests_waiting", families.waiting),
            ("kv_cache_usage", families.kv_cache),
        )
        if (value := total(names)) is not None
    }
    counters = {
        key: value
        for key, names in (
            ("prompt_tokens", families.prompt_tokens),
            ("generated_tokens", families.generated_tokens),
        )
        if (value := total(names)) is not None
    }
    return gauges, counters


def served_models(body: bytes) -> list[dict[str, Any]]:
    """Return the models an OpenAI-compatible /v1/models lists, as the dashboard
    keeps loaded models (name, model, and llama.cpp's size and context)."""
    parsed = jsonio.parse(body)
    entries = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(entries, list):
        raise ValueError("/v1/models has no data list")
    models = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        name = storable(entry["id"])[:300]
        model: dict[str, Any] = {"name": name, "model": name}
        meta = entry.get("meta")  # llama.cpp
        if isinstance(meta, dict):
            if _count(meta.get("size")):
                model["size"] = meta["size"]
            if _count(meta.get("n_ctx")):
                model["context_length"] = meta["n_ctx"]
        if _count(entry.get("max_model_len")):  # vLLM
            model["context_length"] = entry["max_model_len"]
        models.append(model)
    return models


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


async def read_server(
    client: httpclient.Client, kind: str, *, full: bool = True
) -> tuple[float, dict[str, Any]]:
    """Ask a server of kind how busy it is and, when full, also what it serves
    and is; return the latency of its first answer (ms) and what was found:
    {"version", "models" (None: not read), "serving", "counters", "error"}.
    Raise what the client raises, and NotServing for an answer that says it
    cannot serve."""
    if kind == "llamacpp":
        return await _read_llamacpp(client, full=full)
    started = time.perf_counter()
    # Nothing follows it for a kind whose metrics are not read.
    reply = await client.get("/v1/models", last=kind not in METRICS)
    latency_ms = (time.perf_counter() - started) * 1000
    if reply.status != 200:
        raise NotServing("/v1/models", reply.status, latency_ms, "")
    found: dict[str, Any] = {
        "version": "",
        "models": served_models(reply.body),
        "serving": {},
        "counters": None,
        "error": "",
    }
    if kind == "vllm" and full:
        version = await client.get("/version")
        if version.status == 200:
            parsed = jsonio.parse(version.body)
            if isinstance(parsed, dict) and isinstance(parsed.get("version"), str):
                found["version"] = storable(parsed["version"])[:64]
    await _read_metrics(client, kind, found)
    return latency_ms, found


async def _read_llamacpp(
    client: httpclient.Client, *, full: bool
) -> tuple[float, dict[str, Any]]:
    """/health, then /slots and /metrics (each answers 501 when switched off);
    when full, /props (slots, context, build, which endpoints are on) and
    /v1/models before them."""
    started = time.perf_counter()
    reply = await client.get("/health")
    latency_ms = (time.perf_counter() - started) * 1000
    if reply.status != 200:
        message = _error_message(reply.body)
        raise NotServing("/health", reply.status, latency_ms, message)
    serving: dict[str, Any] = {}
    found: dict[str, Any] = {
        "version": "",
        "models": None,
        "serving": serving,
        "counters": None,
        "error": "",
    }
    props: dict[str, Any] = {}
    if full:
        said = jsonio.parse((await client.get("/props")).body)
        props = said if isinstance(said, dict) else {}
        if _count(props.get("total_slots")):
            serving["slots_total"] = props["total_slots"]
        settings = props.get("default_generation_settings")
        if isinstance(settings, dict) and _count(settings.get("n_ctx")):
            serving["context_per_slot"] = settings["n_ctx"]
        if isinstance(props.get("build_info"), str):
            found["version"] = storable(props["build_info"])[:64]
        reply = await client.get("/v1/models")
        if reply.status != 200:
            raise NotServing("/v1/models", reply.status, latency_ms, "")
        found["models"] = served_models(reply.body)
    if props.get("endpoint_slots", True) is not False:
        slots = await client.get(
            "/slots", last=props.get("endpoint_metrics", True) is False
        )
        if slots.status == 200:
            listed = jsonio.parse(slots.body)
            if isinstance(listed, list):
                entries = [slot for slot in listed if isinstance(slot, dict)]
                serving["slots_total"] = len(entries)
                serving["slots_busy"] = sum(
                    1 for slot in entries if slot.get("is_processing") is True
                )
    if props.get("endpoint_metrics", True) is not False:
        await _read_metrics(client, "llamacpp", found)
    return latency_ms, found


async def _read_metrics(
    client: httpclient.Client, kind: str, found: dict[str, Any]
) -> None:
    """Read /metrics into found where the server exposes it; a page that cannot
    be read is said in found["error"], and the probe goes on without it."""
    families = METRICS.get(kind)
    if families is None:
        return
    try:
        reply = await client.get("/metrics", max_body=MAX_METRICS_BODY, last=True)
    except httpclient.BadReply as exc:
        found["error"] = f"/metrics not read: {exc}"[:300]
        return
    if reply.status != 200:
        return  # not enabled (llama.cpp: 501 without --metrics)
    try:
        gauges, counters = read_metrics(reply.body.decode("utf-8", "replace"), families)
    except MetricsError as exc:
        found["error"] = f"/metrics not read: {exc}"[:300]
        return
    found["serving"].update(gauges)
    found["counters"] = counters


def _error_message(body: bytes) -> str:
    """Return the message of an OpenAI-shaped error body, or ""."""
    try:
        parsed = jsonio.parse(body)
    except ValueError:
        return ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return storable(error["message"])[:200]
    return ""


async def detect_kind(client: httpclient.Client) -> str | None:
    """Tell from a node's answers what kind of server it is; None: no kind known.

    /v1/models first (every kind has it, Ollama too): its entries say whose they
    are (owned_by "llamacpp", "vllm", "sglang"; LM Studio's "organization_owner";
    TGI's the model itself with created 0; LocalAI's only id and object). An
    answer that names none of these, or none at all, is Ollama's when
    /api/version answers as Ollama's does, else some other OpenAI-compatible
    server's.
    """
    reply = await client.get("/v1/models")
    entries = []
    if reply.status == 200:
        try:
            parsed = jsonio.parse(reply.body)
        except ValueError:
            parsed = None
        listed = parsed.get("data") if isinstance(parsed, dict) else None
        entries = (
            [e for e in listed if isinstance(e, dict)]
            if isinstance(listed, list)
            else []
        )
    for entry in entries:
        owner = entry.get("owned_by")
        if owner in ("llamacpp", "vllm", "sglang"):
            return owner
        if owner == "organization_owner":
            return "lmstudio"
        if entry.get("created") == 0 and owner == entry.get("id"):
            return "tgi"
        if set(entry) == {"id", "object"}:
            return "localai"
    version = await client.get("/api/version")
    if version.status == 200:
        try:
            said = jsonio.parse(version.body)
        except ValueError:
            said = None
        if isinstance(said, dict) and isinstance(said.get("version"), str):
            return "ollama"
    if reply.status == 200 and isinstance(parsed, dict):
        return "openai"
    return None


class NotServing(Exception):
    """The server answered, with an HTTP error where it should have served."""

    def __init__(self, path: str, status: int, latency_ms: float, message: str):
        said = f": {message}" if message else ""
        super().__init__(f"{path} answered HTTP {status}{said}")
        self.path = path
        self.status = status
        self.latency_ms = latency_ms

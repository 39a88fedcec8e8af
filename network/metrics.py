"""Nodes, backends and probe cycles for /api/prometheus (activity.prometheus).

A node that does not answer (unhealthy, offline, not probed yet) is ``up`` 0 and
has no latency, model or VRAM series: what it holds is unknown, not zero.
Backends likewise. Nodes are labelled ``node="host:port"``, as activity events and
router reports name them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.db.models import TextField
from django.db.models.functions import Cast

from core.addresses import host_port
from core.prometheus import Family, escape, integer
from network.choices import BackendStatus, NodeStatus
from network.gateway import live
from network.models import OllamaNode, ProbeCycle, RpcBackend
from network.status import backend_usable, node_usable


def nodes() -> Iterator[Family]:
    up = Family(
        "sollol_node_up",
        "gauge",
        "Whether the Ollama node answered its last probe (network.status).",
    )
    status = Family(
        "sollol_node_status",
        "gauge",
        "Status of the Ollama node: 1 for its current status, 0 for the others.",
    )
    info = Family(
        "sollol_node_info",
        "gauge",
        "Node URL, kind of server and version (always 1).",
    )
    latency = Family(
        "sollol_node_probe_latency_seconds",
        "gauge",
        "How long the node took to answer its last probe.",
    )
    loaded = Family(
        "sollol_node_loaded_models",
        "gauge",
        "Number of models the node holds in memory (GET /api/ps).",
    )
    vram = Family(
        "sollol_node_vram_used_bytes", "gauge", "VRAM the node's loaded models use."
    )
    model_vram = Family(
        "sollol_node_model_vram_bytes",
        "gauge",
        "VRAM one loaded model uses on the node.",
    )
    model_size = Family(
        "sollol_node_model_size_bytes",
        "gauge",
        "Memory one loaded model takes on the node, in VRAM and RAM together.",
    )
    serving_families = {
        key: Family(name, "gauge", text) for key, name, text in SERVING_FAMILIES
    }
    rates = Family(
        "sollol_node_tokens_per_second",
        "gauge",
        "Tokens a server other than Ollama processed a second between its last two "
        "probes (its counters), by direction: prompt or generation.",
    )
    statuses = [(name, f',status="{name}"}} ') for name in NodeStatus.values]
    rows = OllamaNode.objects.annotate(
        loaded_json=Cast("loaded_models", TextField())
    ).values_list(
        "host", "port", "url", "status", "probe_status", "version", "latency_ms",
        "vram_used_bytes", "loaded_json", "kind", "serving", "loaded_models_failed",
    )  # fmt: skip
    for (
        host, port, url, node_status, probe_status, version, latency_ms, used, models,
        kind, serving, models_failed,
    ) in rows:  # fmt: skip
        node = host_port(host, port)  # one node per host:port (a constraint)
        label = f'node="{escape(node)}"'
        is_up = node_usable(node_status, probe_status)
        up.add(label, 1 if is_up else 0)
        # A line per status and node: written directly, not through add().
        status.lines += [
            f"sollol_node_status{{{label}{rest}{1 if name == node_status else 0}\n"
            for name, rest in statuses
        ]
        info.add(
            f'{label},url="{escape(url)}",kind="{escape(kind)}",'
            f'version="{escape(version)}"',
            1,
        )
        if not is_up:
            continue
        for key, value in (serving or {}).items():
            if key in serving_families and _number(value):
                serving_families[key].add(label, value)
        for direction in ("prompt", "generation"):
            value = (serving or {}).get(f"{direction}_tokens_per_second")
            if _number(value):
                rates.add(f'{label},direction="{direction}"', value)
        if latency_ms is not None:
            latency.add(label, latency_ms / 1000.0)
        if models_failed:
            continue  # its /api/ps fails: what it holds now is not known
        vram.add(label, used)
        per_model: dict[str, list[int]] = {}
        for entry in json.loads(models) if models else ():
            if type(entry) is not dict or type(entry.get("name")) is not str:
                continue
            sizes = per_model.setdefault(entry["name"], [0, 0])
            sizes[0] += integer(entry.get("size_vram")) or 0
            sizes[1] += integer(entry.get("size")) or 0
        loaded.add(label, len(per_model))
        for model, (model_vram_bytes, size) in per_model.items():
            labels = f'{label},model="{escape(model)}"'
            model_vram.add(labels, model_vram_bytes)
            model_size.add(labels, size)
    yield from (up, status, info, latency, loaded, vram, model_vram, model_size)
    yield from (*serving_families.values(), rates)


# What a server other than Ollama says of its work (network.servers), by the key
# it is stored under in OllamaNode.serving.
SERVING_FAMILIES = (
    ("slots_busy", "sollol_node_slots_busy", "Slots of the server processing now."),
    ("slots_total", "sollol_node_slots_total", "Slots the server has in all."),
    (
        "requests_running",
        "sollol_node_requests_running",
        "Requests the server says it is processing.",
    ),
    (
        "requests_waiting",
        "sollol_node_requests_waiting",
        "Requests the server says are waiting (deferred, queued).",
    ),
    (
        "kv_cache_usage",
        "sollol_node_kv_cache_usage_ratio",
        "KV-cache use the server reports, 1 for full.",
    ),
)


def _number(value: object) -> bool:
    return type(value) in (int, float)


GPU_FAMILIES = (
    ("memory_total", "sollol_gpu_memory_total_bytes", "Memory of the GPU."),
    ("memory_used", "sollol_gpu_memory_used_bytes", "Memory of the GPU in use."),
    ("utilization", "sollol_gpu_utilization_ratio", "How busy the GPU is, 0 to 1."),
    ("temperature", "sollol_gpu_temperature_celsius", "Temperature of the GPU."),
    ("power_watts", "sollol_gpu_power_watts", "Power the GPU draws."),
)


def gpus() -> Iterator[Family]:
    """The nodes' GPUs as their GPU exporters read them (network.gpus)."""
    families = {
        key: Family(name, "gauge", f"{text} (the node's GPU exporter)")
        for key, name, text in GPU_FAMILIES
    }
    rows = OllamaNode.objects.exclude(gpu_exporter="").values_list(
        "host", "port", "gpus"
    )
    for host, port, listed in rows:
        node = escape(host_port(host, port))
        for gpu in listed or ():
            if type(gpu) is not dict:
                continue
            labels = (
                f'node="{node}",gpu="{escape(str(gpu.get("index", "")))}",'
                f'uuid="{escape(str(gpu.get("uuid", "")))}",'
                f'name="{escape(str(gpu.get("name", "")))}"'
            )
            for key, family in families.items():
                if _number(gpu.get(key)):
                    family.add(labels, gpu[key])
    yield from families.values()


def backends() -> Iterator[Family]:
    up = Family(
        "sollol_backend_up",
        "gauge",
        "Whether the llama.cpp RPC backend accepted its last probe (online, busy).",
    )
    status = Family(
        "sollol_backend_status",
        "gauge",
        "Status of the RPC backend: 1 for its current status, 0 for the others.",
    )
    latency = Family(
        "sollol_backend_probe_latency_seconds",
        "gauge",
        "How long the backend took to accept its last probe.",
    )
    free = Family(
        "sollol_backend_device_memory_free_bytes",
        "gauge",
        "Free memory of a device of the backend, at its last protocol session.",
    )
    total = Family(
        "sollol_backend_device_memory_total_bytes",
        "gauge",
        "Total memory of a device of the backend.",
    )
    rows = RpcBackend.objects.annotate(
        devices_json=Cast("devices", TextField())
    ).values_list("address", "status", "latency_ms", "devices_json")
    for backend, backend_status, latency_ms, devices in rows:
        label = f'backend="{escape(backend)}"'
        is_up = backend_usable(backend_status)
        up.add(label, 1 if is_up else 0)
        for name in BackendStatus.values:
            status.add(f'{label},status="{name}"', 1 if name == backend_status else 0)
        if not is_up:
            continue
        if latency_ms is not None:
            latency.add(label, latency_ms / 1000.0)
        for device in json.loads(devices) if devices else ():
            if type(device) is not dict or integer(device.get("index")) is None:
                continue
            labels = f'{label},device="{device["index"]}"'
            if (value := integer(device.get("free"))) is not None:
                free.add(labels, value)
            if (value := integer(device.get("total"))) is not None:
                total.add(labels, value)
    yield from (up, status, latency, free, total)


def probe_cycles() -> Iterator[Family]:
    family = Family(
        "sollol_probe_cycle_duration_seconds",
        "gauge",
        "How long the last probe cycle took (longer than the interval: behind).",
    )
    # ROUND only numbers sharded rounds; LAST_CYCLE holds the last cycle's
    # (or, sharded, the current round's) figures.
    cycles = ProbeCycle.objects.filter(name=ProbeCycle.Name.LAST_CYCLE)
    for name, seconds in cycles.values_list("name", "seconds"):
        family.add(f'cycle="{escape(name)}"', seconds)
    yield family


def gateway_load() -> Iterator[Family]:
    in_flight = Family(
        "sollol_gateway_in_flight",
        "gauge",
        "Requests the gateway is forwarding to the node now.",
    )
    queued = Family(
        "sollol_gateway_queue_depth",
        "gauge",
        "Requests waiting in the gateway for a free slot of the node.",
    )
    for node, (active, waiting) in sorted(live.node_load().items()):
        label = f'node="{escape(node)}"'
        in_flight.add(label, active)
        queued.add(label, waiting)
    yield from (in_flight, queued)

"""A node's GPUs, read from the GPU exporter the operator named for it.

Two exporters, as their source writes them: NVIDIA's DCGM exporter
(etc/default-counters.csv: DCGM_FI_DEV_FB_USED/FREE/RESERVED in MiB,
DCGM_FI_DEV_GPU_UTIL in %, DCGM_FI_DEV_GPU_TEMP in °C, DCGM_FI_DEV_POWER_USAGE in
W; labels gpu, UUID (uuid with its old-label option), modelName) and
utkuozdemir/nvidia_gpu_exporter (nvidia_smi_memory_used/total_bytes,
nvidia_smi_utilization_gpu_ratio 0..1, nvidia_smi_temperature_gpu,
nvidia_smi_power_draw_watts; label uuid, names on nvidia_smi_gpu_info).
Either becomes [{index, uuid, name, memory_total, memory_used, utilization,
temperature, power_watts}] in bytes and 0..1, ordered by index.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from core import httpclient
from core.addresses import split_host_port
from core.jsonio import PayloadError, storable

MIB = 1024 * 1024
MAX_BODY = 2 * 1024 * 1024
NEARLY_FULL = 0.95  # a GPU's memory this used: "VRAM nearly full"
ROOM_AGAIN = 0.90  # ... and below this again: it has room (no flapping between)

_DCGM = {
    "DCGM_FI_DEV_FB_USED": ("memory_used", MIB),
    "DCGM_FI_DEV_FB_FREE": ("memory_free", MIB),
    "DCGM_FI_DEV_FB_RESERVED": ("memory_reserved", MIB),
    "DCGM_FI_DEV_GPU_UTIL": ("utilization", 0.01),
    "DCGM_FI_DEV_GPU_TEMP": ("temperature", 1),
    "DCGM_FI_DEV_POWER_USAGE": ("power_watts", 1),
}
_NVIDIA_SMI = {
    "nvidia_smi_memory_used_bytes": ("memory_used", 1),
    "nvidia_smi_memory_total_bytes": ("memory_total", 1),
    "nvidia_smi_utilization_gpu_ratio": ("utilization", 1),
    "nvidia_smi_temperature_gpu": ("temperature", 1),
    "nvidia_smi_power_draw_watts": ("power_watts", 1),
}


def exporter_entry(value: str) -> tuple[str, str]:
    """Return (node host:port, exporter URL) of a SOLLOL_GPU_EXPORTERS entry."""
    node, separator, url = value.strip().partition("=")
    if not separator or not node.strip() or not url.strip():
        raise PayloadError(
            f"{value!r}: a GPU exporter is given as host:port=http://exporter:port"
        )
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        url = f"http://{url}"
    node = node.strip().lower().removeprefix("http://").rstrip("/")
    split_host_port(node)  # raises PayloadError for what is not host:port
    return node, url.rstrip("/")


def read_gpus(text: str) -> list[dict[str, Any]]:
    """Return the GPUs an exporter's page says; raise ValueError for a page that
    is not one of theirs."""
    gpus: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    indexes: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if math.isnan(sample.value) or math.isinf(sample.value):
                continue
            labels = sample.labels
            if sample.name == "nvidia_smi_gpu_info":
                uuid = labels.get("uuid", "")
                names[uuid] = labels.get("name", "")
                if labels.get("index", "").isdigit():
                    indexes[uuid] = int(labels["index"])
                continue
            known = _DCGM.get(sample.name) or _NVIDIA_SMI.get(sample.name)
            if known is None:
                continue
            uuid = labels.get("UUID") or labels.get("uuid") or labels.get("gpu", "")
            gpu = gpus.setdefault(uuid, {"uuid": storable(uuid)[:100]})
            if labels.get("gpu", "").isdigit():
                gpu["index"] = int(labels["gpu"])
            if labels.get("modelName"):
                gpu["name"] = storable(labels["modelName"])[:100]
            key, scale = known
            gpu[key] = sample.value * scale
    if not gpus:
        raise ValueError("no GPU memory on the page (a DCGM or nvidia_gpu_exporter?)")
    found = []
    for position, (uuid, gpu) in enumerate(sorted(gpus.items())):
        gpu.setdefault("index", indexes.get(uuid, position))
        if uuid in names:
            gpu["name"] = storable(names[uuid])[:100]
        if "memory_total" not in gpu and "memory_used" in gpu and "memory_free" in gpu:
            gpu["memory_total"] = (
                gpu["memory_used"] + gpu["memory_free"] + gpu.get("memory_reserved", 0)
            )
        gpu.pop("memory_free", None)
        gpu.pop("memory_reserved", None)
        for key in ("memory_total", "memory_used"):
            if key in gpu:
                gpu[key] = int(gpu[key])
        for key in ("utilization", "temperature", "power_watts"):
            if key in gpu:
                gpu[key] = round(gpu[key], 3)
        found.append(gpu)
    return sorted(found, key=lambda gpu: gpu["index"])


async def probe_gpus(
    url: str, *, timeout: float, pool: httpclient.Pool | None = None
) -> tuple[list[dict[str, Any]] | None, str]:
    """Read the exporter at url; return (its GPUs, "") or (None, why not)."""
    try:
        async with (
            asyncio.timeout(timeout),
            httpclient.Client(url, max_body=MAX_BODY, pool=pool) as client,
        ):
            reply = await client.get("/metrics", last=True)
        if reply.status != 200:
            return None, f"GPU exporter {url}/metrics answered HTTP {reply.status}"
        return read_gpus(reply.body.decode("utf-8", "replace")), ""
    except TimeoutError:
        return None, f"GPU exporter {url}: no answer within {round(timeout, 2)}s"
    except httpclient.HttpError as exc:
        return None, f"GPU exporter {url}: {exc}"[:300]
    except ValueError as exc:
        return None, f"GPU exporter {url}: {exc}"[:300]


def nearly_full(gpu: dict[str, Any], threshold: float = NEARLY_FULL) -> bool:
    total, used = gpu.get("memory_total"), gpu.get("memory_used")
    return bool(total) and used is not None and used / total >= threshold

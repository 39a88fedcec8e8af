"""Fleet metrics for Prometheus, read from the database at scrape time.

Every value comes from rows any server process can read, so N dashboard processes
behind a proxy all answer the same scrape; no counter lives in one process's memory.

Nodes are labelled ``node="host:port"``, as activity events and router reports name
them, so router metrics join node metrics on that label. A node that does not answer
(unhealthy, offline, not probed yet) is ``up`` 0 and has no latency, model or VRAM
series: what it holds is unknown, not zero. Backends likewise.

The text format (version 0.0.4) is written here rather than through
prometheus_client's CollectorRegistry and generate_latest: at 1,000 nodes and 1,300
router histograms (40,000 samples) building its Sample objects and formatting them
took 265 ms a scrape, this 34 ms (bench/RESULTS.md). Tests read the output with
prometheus_client's parser.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, TextField
from django.db.models.functions import Cast

from activity.metrics import LATENCY_BUCKETS
from activity.models import EventCount, RequestTotals
from applications.choices import AppStatus
from applications.models import Application
from network.choices import BackendStatus, NodeStatus
from network.models import OllamaNode, ProbeCycle, RpcBackend

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Statuses in which a node or backend answered its last probe.
NODE_UP = frozenset({NodeStatus.HEALTHY, NodeStatus.DEGRADED})
BACKEND_UP = frozenset({BackendStatus.ONLINE, BackendStatus.BUSY})


class Family:
    """One metric family: its HELP and TYPE lines, then one line per sample."""

    __slots__ = ("name", "lines")

    def __init__(self, name: str, type: str, help: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {help}\n# TYPE {name} {type}\n"]

    def add(self, labels: str, value: float, suffix: str = "") -> None:
        """Add a sample; labels is preformatted, e.g. ``node="a:1",model="m"``."""
        self.lines.append(f"{self.name}{suffix}{{{labels}}} {_number(value)}\n")


def _escape(value: str) -> str:
    """Escape a label value: backslash, double quote and newline (text format)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _number(value: float) -> str:
    if type(value) is int:
        return str(value)
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _int(value: Any) -> int | None:
    """Return value if it is a real integer (nodes report what they like), else None."""
    return value if type(value) is int else None


class FleetCollector:
    """Read the fleet's state from the database and write it as metric families."""

    def collect(self) -> Iterator[Family]:
        yield from self.nodes()
        yield from self.backends()
        yield from self.applications()
        yield from self.events()
        yield from self.router()
        yield from self.probe_cycles()

    def nodes(self) -> Iterator[Family]:
        up = Family(
            "sollol_node_up",
            "gauge",
            "Whether the Ollama node answered its last probe (healthy or degraded).",
        )
        status = Family(
            "sollol_node_status",
            "gauge",
            "Status of the Ollama node: 1 for its current status, 0 for the others.",
        )
        info = Family(
            "sollol_node_info", "gauge", "Ollama node URL and version (always 1)."
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
        statuses = [(name, f',status="{name}"}} ') for name in NodeStatus.values]
        seen: set[str] = set()
        rows = OllamaNode.objects.annotate(
            loaded_json=Cast("loaded_models", TextField())
        ).values_list(
            "host", "port", "url", "status", "version", "latency_ms",
            "vram_used_bytes", "loaded_json",
        )  # fmt: skip
        for host, port, url, node_status, version, latency_ms, used, models in rows:
            node = f"{host}:{port}"
            if node in seen:  # http and https on one host:port: tell them apart
                node = url
            seen.add(node)
            label = f'node="{_escape(node)}"'
            is_up = node_status in NODE_UP
            up.add(label, 1 if is_up else 0)
            # Five lines per node: written directly, not through add().
            status.lines += [
                f"sollol_node_status{{{label}{rest}{1 if name == node_status else 0}\n"
                for name, rest in statuses
            ]
            info.add(f'{label},url="{_escape(url)}",version="{_escape(version)}"', 1)
            if not is_up:
                continue
            if latency_ms is not None:
                latency.add(label, latency_ms / 1000.0)
            vram.add(label, used)
            per_model: dict[str, list[int]] = {}
            for entry in json.loads(models) if models else ():
                if type(entry) is not dict or type(entry.get("name")) is not str:
                    continue
                sizes = per_model.setdefault(entry["name"], [0, 0])
                sizes[0] += _int(entry.get("size_vram")) or 0
                sizes[1] += _int(entry.get("size")) or 0
            loaded.add(label, len(per_model))
            for model, (model_vram_bytes, size) in per_model.items():
                labels = f'{label},model="{_escape(model)}"'
                model_vram.add(labels, model_vram_bytes)
                model_size.add(labels, size)
        yield from (up, status, info, latency, loaded, vram, model_vram, model_size)

    def backends(self) -> Iterator[Family]:
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
            label = f'backend="{_escape(backend)}"'
            is_up = backend_status in BACKEND_UP
            up.add(label, 1 if is_up else 0)
            for name in BackendStatus.values:
                status.add(
                    f'{label},status="{name}"', 1 if name == backend_status else 0
                )
            if not is_up:
                continue
            if latency_ms is not None:
                latency.add(label, latency_ms / 1000.0)
            for device in json.loads(devices) if devices else ():
                if type(device) is not dict or _int(device.get("index")) is None:
                    continue
                labels = f'{label},device="{device["index"]}"'
                if (value := _int(device.get("free"))) is not None:
                    free.add(labels, value)
                if (value := _int(device.get("total"))) is not None:
                    total.add(labels, value)
        yield from (up, status, latency, free, total)

    def applications(self) -> Iterator[Family]:
        counts = dict.fromkeys(AppStatus.values, 0)
        rows = (
            Application.objects.order_by()
            .values_list("status")
            .annotate(count=Count("*"))
        )
        for app_status, count in rows:
            counts[app_status] = count
        family = Family(
            "sollol_applications", "gauge", "Registered applications by status."
        )
        for app_status, count in counts.items():
            family.add(f'status="{_escape(app_status)}"', count)
        yield family

    def events(self) -> Iterator[Family]:
        family = Family(
            "sollol_events_total",
            "counter",
            "Events ever written to the event log, by stream and type.",
        )
        rows = EventCount.objects.order_by("stream", "type").values_list(
            "stream", "type", "count"
        )
        for stream, type, count in rows:
            family.add(f'stream="{_escape(stream)}",type="{_escape(type)}"', count)
        yield family

    def router(self) -> Iterator[Family]:
        requests = Family(
            "sollol_router_requests_total",
            "counter",
            "Inference requests routers and applications reported.",
        )
        errors = Family(
            "sollol_router_request_errors_total",
            "counter",
            "Reported inference requests that failed.",
        )
        tokens = Family(
            "sollol_router_tokens_total",
            "counter",
            "Tokens of reported requests, by type (prompt or completion).",
        )
        duration = Family(
            "sollol_router_request_duration_seconds",
            "histogram",
            "Latency of reported inference requests.",
        )
        bucket_labels = [f',le="{float(bound)!r}"}} ' for bound in LATENCY_BUCKETS]
        bucket_labels.append(',le="+Inf"} ')
        rows = RequestTotals.objects.order_by("node", "model").values_list(
            "node", "model", "requests", "errors", "latency_seconds_sum",
            "prompt_tokens", "completion_tokens", "buckets",
        )  # fmt: skip
        for node, model, count, failed, seconds, prompt, completion, buckets in rows:
            label = f'node="{_escape(node)}",model="{_escape(model)}"'
            requests.add(label, count)
            errors.add(label, failed)
            tokens.add(f'{label},type="prompt"', prompt)
            tokens.add(f'{label},type="completion"', completion)
            cumulative = _cumulative(buckets, len(bucket_labels))
            duration.lines += [
                f"sollol_router_request_duration_seconds_bucket{{{label}{le}{n}\n"
                for le, n in zip(bucket_labels, cumulative, strict=True)
            ]
            duration.add(label, seconds, "_sum")
            duration.add(label, cumulative[-1], "_count")
        yield from (requests, errors, tokens, duration)

    def probe_cycles(self) -> Iterator[Family]:
        family = Family(
            "sollol_probe_cycle_duration_seconds",
            "gauge",
            "How long the last probe cycle took (longer than the interval: behind).",
        )
        # "round" only numbers sharded rounds; "network" holds the last cycle's
        # (or, sharded, the current round's) figures.
        cycles = ProbeCycle.objects.filter(name="network")
        for name, seconds in cycles.values_list("name", "seconds"):
            family.add(f'cycle="{_escape(name)}"', seconds)
        yield family


def _cumulative(buckets: Any, size: int) -> list[int]:
    """Return the running totals of a stored (non-cumulative) bucket list.

    The last is the count of every request, the +Inf bucket. A list of another
    length (written before the bounds changed) counts its extra entries as beyond
    the last bound and its missing ones as 0.
    """
    counts = [_int(n) or 0 for n in buckets] if type(buckets) is list else []
    finite = counts[: size - 1] + [0] * (size - 1 - len(counts))
    running, result = 0, []
    for count in finite:
        running += count
        result.append(running)
    result.append(running + sum(counts[size - 1 :]))
    return result


def exposition() -> bytes:
    """Return the fleet's metrics in the Prometheus text format, version 0.0.4."""
    lines = [line for family in FleetCollector().collect() for line in family.lines]
    # A lone surrogate (JSON allows "\ud800") cannot be UTF-8: write "?" for it.
    return "".join(lines).encode("utf-8", "replace")

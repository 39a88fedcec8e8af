"""The only code that talks to Ray and Dask: their dashboards' HTTP APIs.

Each collection sends its GETs concurrently through one core.httpclient client
(a connection per GET in flight, closed with the collection), under one deadline,
and turns whatever comes back into a `Collection`. Nothing in here raises: a
refused connection, a timeout, a proxy's HTML error page or a field renamed in a
new Ray release all end up as a status, a null or a warning.

Field names were read from Ray 2.60 and distributed 2026.8 (see README "Ray and
Dask"); older and newer releases that rename a field show a null there, not an error.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from core import httpclient
from core.jsonio import storable
from frameworks.choices import FrameworkStatus, Kind

# A cluster of hundreds of nodes answers /nodes?view=summary with a few MB.
MAX_BODY = 8 * 1024 * 1024
MAX_TEXT = 300  # longest string kept from a field of the far side
MAX_ITEMS = 256  # nodes or workers kept per snapshot (the totals count them all)
MAX_RUNNING_JOBS = 20
CONNECTIONS = 8  # GETs in flight at once per collection: Ray's six, and spares


@dataclass
class Collection:
    """What one collection of a framework's dashboard found."""

    kind: str
    status: str
    dashboard_url: str
    data: dict[str, Any] = field(default_factory=dict)  # the envelope's body
    sample: dict[str, Any] = field(default_factory=dict)  # numbers for sparklines
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    duration_ms: float | None = None


class FetchError(Exception):
    """A GET that produced no usable answer; `status` says what that means."""

    def __init__(self, status: str, message: str, http_status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = http_status  # 0: no HTTP answer at all


# --- HTTP -------------------------------------------------------------------


def _client(base_url: str, token: str) -> httpclient.Client:
    """Return the client for one collection of the dashboard at base_url.

    Its GETs run at once, each on a connection of its own that the next GET may
    reuse; the session ends with the collection.
    """
    try:
        return httpclient.Client(
            base_url,
            max_body=MAX_BODY,
            credential=httpclient.Credential.bearer(token) if token else None,
            connections=CONNECTIONS,
        )
    except ValueError as exc:
        raise FetchError(FrameworkStatus.UNREACHABLE, str(exc)) from None


async def fetch_json(
    client: httpclient.Client, path: str, *, max_body: int | None = None
) -> Any:
    """GET path and return its JSON; raise FetchError otherwise."""
    reply = await _get(client, path, max_body=max_body)
    if reply.status in (401, 403):
        raise FetchError(
            FrameworkStatus.AUTH_REQUIRED,
            f"{path}: HTTP {reply.status} {_snippet(reply.body)}".rstrip(),
            reply.status,
        )
    if reply.status != 200:
        raise FetchError(
            FrameworkStatus.UNREACHABLE,
            f"{path}: HTTP {reply.status} {_snippet(reply.body)}".rstrip(),
            reply.status,
        )
    try:
        return json.loads(reply.body)
    except (ValueError, RecursionError):
        raise FetchError(
            FrameworkStatus.UNREACHABLE, f"{path}: the reply is not JSON"
        ) from None


async def fetch_text(
    client: httpclient.Client, path: str, *, max_body: int = 64 * 1024
) -> tuple[int, str]:
    """GET path; return its status and its body as text."""
    reply = await _get(client, path, max_body=max_body)
    return reply.status, reply.body.decode("utf-8", "replace")


def _snippet(body: bytes) -> str:
    text = body[:120].decode("utf-8", "replace").strip().replace("\n", " ")
    return storable(text)


async def _get(
    client: httpclient.Client, path: str, *, max_body: int | None
) -> httpclient.Reply:
    try:
        return await client.get(path, max_body=max_body)
    except httpclient.Unreachable as exc:
        # Without the path: one refused connection fails every GET alike.
        raise FetchError(FrameworkStatus.UNREACHABLE, str(exc)) from None
    except httpclient.Disconnected as exc:
        raise FetchError(
            FrameworkStatus.UNREACHABLE, f"{path}: the dashboard {exc}"
        ) from None
    except httpclient.HttpError as exc:
        raise FetchError(FrameworkStatus.UNREACHABLE, f"{path}: {exc}") from None


async def _gather(
    client: httpclient.Client, paths: dict[str, str], *, timeout: float
) -> dict[str, Any]:
    """Fetch every path at once; map each name to its JSON or its FetchError.

    Each GET has its own timeout, shorter than the collection's deadline, so one
    slow optional endpoint (the task summary of a big Ray cluster) becomes a
    warning instead of costing the whole collection.
    """
    results = await asyncio.gather(
        *(
            asyncio.wait_for(fetch_json(client, path), timeout)
            for path in paths.values()
        ),
        return_exceptions=True,
    )
    out: dict[str, Any] = {}
    for name, result in zip(paths, results, strict=True):
        if isinstance(result, TimeoutError):
            result = FetchError(
                FrameworkStatus.UNREACHABLE,
                f"{paths[name]}: no answer within {timeout:.2g} s",
            )
        elif isinstance(result, BaseException) and not isinstance(result, FetchError):
            result = FetchError(
                FrameworkStatus.UNREACHABLE, f"{paths[name]}: {type(result).__name__}"
            )
        out[name] = result
    return out


# --- tolerant field readers ---------------------------------------------------


def num(value: Any) -> int | float | None:
    """Return a JSON number (or a numeric string, as Ray sends some) or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, str) and value.strip():
        try:
            parsed = float(value)
        except ValueError:
            return None
        if parsed != parsed or abs(parsed) == float("inf"):
            return None
        return int(parsed) if parsed.is_integer() and "." not in value else parsed
    return None


def text(value: Any) -> str | None:
    """Return a string field made safe to store and short, or None."""
    if isinstance(value, str):
        return storable(value[:MAX_TEXT])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def dig(value: Any, *keys: str | int) -> Any:
    """Return value[k1][k2]… or None where any step is missing or of another type."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(value, list) or not -len(value) <= key < len(value):
                return None
        elif not isinstance(value, dict):
            return None
        value = value[key] if isinstance(key, int) else value.get(key)
    return value


def first(value: dict, *names: str) -> Any:
    """Return the first of value's fields present (camelCase or snake_case)."""
    for name in names:
        if name in value:
            return value[name]
    return None


def counts(value: Any) -> dict[str, int]:
    """Return a {state: count} mapping with storable keys and integer counts."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, int] = {}
    for key, count in list(value.items())[:MAX_ITEMS]:
        number = num(count)
        if number is not None:
            out[text(key) or "?"] = int(number)
    return out


# --- Ray --------------------------------------------------------------------

RAY_PATHS = {
    "version": "/api/version",
    "cluster_status": "/api/cluster_status",
    "nodes": "/nodes?view=summary",
    "tasks": "/api/v0/tasks/summarize",
    "actors": "/api/v0/actors/summarize",
    "jobs": "/api/jobs/",
}
# Without these the cluster is not "active": the rest only adds detail.
RAY_CORE = ("version", "cluster_status")
# /api/cluster_status names resources in camelCase; the API uses Ray's own names.
RAY_RESOURCES = {
    "CPU": "CPU",
    "GPU": "GPU",
    "memory": "memory",
    "objectStoreMemory": "object_store_memory",
    "object_store_memory": "object_store_memory",
}


async def collect_ray(url: str, *, token: str, timeout: float) -> Collection:
    """Collect a Ray cluster from its dashboard at url."""
    return await _collect(Kind.RAY, url, timeout, _ray(url, token, timeout))


async def _ray(url: str, token: str, timeout: float) -> Collection:
    async with _client(url, token) as client:
        replies = await _gather(client, RAY_PATHS, timeout=0.75 * timeout)
    collection = _judge(Kind.RAY, url, replies, RAY_CORE)
    if collection.status != FrameworkStatus.ACTIVE:
        return collection
    version = replies["version"]
    nodes = _ray_nodes(replies["nodes"], replies["cluster_status"])
    resources = _ray_resources(replies["cluster_status"])
    jobs = _ray_jobs(replies["jobs"])
    tasks = _ray_summary(replies["tasks"], "tasks")
    actors = _ray_summary(replies["actors"], "actors")
    alive = [n for n in nodes or [] if n["state"] == "ALIVE"]
    collection.data = {
        "ray_version": text(dig(version, "ray_version")),
        "ray_commit": text(dig(version, "ray_commit")),
        "session_name": text(dig(version, "session_name")),
        "nodes": nodes[:MAX_ITEMS] if nodes is not None else None,
        "nodes_total": len(nodes) if nodes is not None else None,
        "nodes_alive": len(alive) if nodes is not None else None,
        "resources": resources,
        "jobs": jobs,
        "tasks": tasks,
        "actors": actors,
    }
    collection.sample = {
        "cpu_used": dig(resources, "CPU", "used"),
        "cpu_total": dig(resources, "CPU", "total"),
        "gpu_used": dig(resources, "GPU", "used"),
        "gpu_total": dig(resources, "GPU", "total"),
        "memory_used": dig(resources, "memory", "used"),
        "object_store_used": dig(resources, "object_store_memory", "used"),
        "nodes_alive": collection.data["nodes_alive"],
        "cpu_percent": _mean([n["cpu_percent"] for n in alive]),
        "running_jobs": dig(jobs, "running"),
        "running_tasks": tasks["by_state"].get("RUNNING", 0) if tasks else None,
    }
    return collection


def _ray_resources(reply: Any) -> dict[str, Any] | None:
    usage = dig(reply, "data", "clusterStatus", "loadMetricsReport", "usage")
    return _usage(usage) if isinstance(usage, dict) else None


def _usage(usage: dict) -> dict[str, Any]:
    """Return {resource: {"used", "total"}} from Ray's {name: [used, total]}."""
    resources: dict[str, Any] = {}
    for name, pair in usage.items():
        key = RAY_RESOURCES.get(name)
        if key is None or not isinstance(pair, list) or len(pair) != 2:
            continue  # node:<ip> and custom resources are not charted
        resources[key] = {"used": num(pair[0]), "total": num(pair[1])}
    return resources


def _ray_nodes(reply: Any, cluster_status: Any) -> list[dict[str, Any]] | None:
    summary = dig(reply, "data", "summary")
    if not isinstance(summary, list):
        return None
    # Logical resources per node (CPU, GPU, memory, object store: used/total) are
    # in the cluster status, keyed by node id.
    by_node = dig(
        cluster_status, "data", "clusterStatus", "loadMetricsReport", "usageByNode"
    )
    by_node = by_node if isinstance(by_node, dict) else {}
    nodes = []
    for entry in summary:
        if isinstance(entry, dict):
            node = _ray_node(entry)
            usage = by_node.get(node["node_id"])
            node["resources"] = _usage(usage) if isinstance(usage, dict) else None
            nodes.append(node)
    # Alive first, then the head, then by address: the order a reader scans.
    nodes.sort(key=lambda n: (n["state"] != "ALIVE", not n["is_head"], n["ip"] or ""))
    return nodes


def _ray_node(entry: dict) -> dict[str, Any]:
    raylet = entry.get("raylet") if isinstance(entry.get("raylet"), dict) else {}
    mem = entry.get("mem") if isinstance(entry.get("mem"), list) else []
    cpus = entry.get("cpus") if isinstance(entry.get("cpus"), list) else []
    gpus = entry.get("gpus") if isinstance(entry.get("gpus"), list) else []
    return {
        "node_id": text(first(raylet, "nodeId", "node_id")),
        "hostname": text(entry.get("hostname")),
        "ip": text(entry.get("ip")),
        "state": text(raylet.get("state")) or "UNKNOWN",
        "is_head": first(raylet, "isHeadNode", "is_head_node") is True,
        "cpu_percent": num(entry.get("cpu")),
        "cpus_logical": num(dig(cpus, 0)),
        "cpus_physical": num(dig(cpus, 1)),
        # mem is psutil's virtual_memory(): [total, available, percent, used].
        "memory_total": num(dig(mem, 0)),
        "memory_available": num(dig(mem, 1)),
        "memory_percent": num(dig(mem, 2)),
        "memory_used": num(dig(mem, 3)),
        "workers": num(first(raylet, "numWorkers", "num_workers")),
        "gpus": [_ray_gpu(gpu) for gpu in gpus[:64] if isinstance(gpu, dict)],
    }


def _ray_gpu(gpu: dict) -> dict[str, Any]:
    return {
        "index": num(gpu.get("index")),
        "name": text(gpu.get("name")),
        "uuid": text(gpu.get("uuid")),
        "utilization_percent": num(first(gpu, "utilizationGpu", "utilization_gpu")),
        # Ray reports GPU memory in megabytes.
        "memory_used_mb": num(first(gpu, "memoryUsed", "memory_used")),
        "memory_total_mb": num(first(gpu, "memoryTotal", "memory_total")),
    }


def _ray_jobs(reply: Any) -> dict[str, Any] | None:
    if not isinstance(reply, list):
        return None
    by_status: dict[str, int] = {}
    running: list[dict[str, Any]] = []
    for job in reply:
        if not isinstance(job, dict):
            continue
        status = text(job.get("status")) or "UNKNOWN"
        by_status[status] = by_status.get(status, 0) + 1
        if status == "RUNNING" and len(running) < MAX_RUNNING_JOBS:
            running.append(
                {
                    "job_id": text(job.get("job_id")),
                    "submission_id": text(job.get("submission_id")),
                    "type": text(job.get("type")),
                    "entrypoint": text(job.get("entrypoint")),
                    # Ray sends milliseconds; the API speaks Unix seconds.
                    "start_time": _seconds(num(job.get("start_time"))),
                }
            )
    return {
        "total": sum(by_status.values()),
        "running": by_status.get("RUNNING", 0),
        "pending": by_status.get("PENDING", 0),
        "by_status": by_status,
        "running_jobs": running,
    }


def _ray_summary(reply: Any, what: str) -> dict[str, Any] | None:
    """Sum a /api/v0/{tasks,actors}/summarize reply's state counts cluster-wide."""
    per_node = dig(reply, "data", "result", "result", "node_id_to_summary")
    if not isinstance(per_node, dict):
        return None
    by_state: dict[str, int] = {}
    for node in per_node.values():
        summary = dig(node, "summary")
        if not isinstance(summary, dict):
            continue
        for entry in summary.values():
            for state, count in counts(dig(entry, "state_counts")).items():
                by_state[state] = by_state.get(state, 0) + count
    return {"total": sum(by_state.values()), "by_state": by_state}


def _seconds(milliseconds: int | float | None) -> float | None:
    return milliseconds / 1000 if milliseconds else None


def _mean(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return round(sum(numbers) / len(numbers), 1) if numbers else None


# --- Dask -------------------------------------------------------------------

DASK_PATHS = {
    "identity": "/json/identity.json",
    "counts": "/json/counts.json",
}
# identity.json fails often on a busy cluster (see _dask): the counts decide.
DASK_CORE = ("counts",)
DASK_TASK_FIELDS = (
    "processing",
    "waiting",
    "waiting_data",
    "erred",
    "memory",
    "released",
    "unrunnable",
    "tasks",
    "bytes",
    "clients",
    "idle",
    "saturated",
    "desired_workers",
)


async def collect_dask(url: str, *, timeout: float) -> Collection:
    """Collect a Dask cluster from its scheduler's HTTP server at url."""
    return await _collect(Kind.DASK, url, timeout, _dask(url, timeout))


async def _dask(url: str, timeout: float) -> Collection:
    async with _client(url, "") as client:
        return await _dask_read(client, url, timeout)


async def _dask_read(client: httpclient.Client, url: str, timeout: float) -> Collection:
    # The workers page, when needed, comes after these: leave it time.
    replies, health = await asyncio.gather(
        _gather(client, DASK_PATHS, timeout=0.5 * timeout),
        _dask_health(client, 0.5 * timeout),
    )
    collection = _judge(Kind.DASK, url, replies, DASK_CORE)
    if collection.status != FrameworkStatus.ACTIVE:
        return collection
    if health is not None:
        collection.warnings.append(health)
    identity = replies["identity"]
    if isinstance(identity, FetchError):
        # distributed 2026.8 answers 500 here whenever a worker's last heartbeat
        # carried fine performance metrics (tuple keys json cannot write), which on
        # a busy cluster is most of the time. The workers page shows the same
        # scheduler state as HTML.
        identity = {}
        workers = await _dask_workers_page(client, collection, 0.4 * timeout)
    else:
        workers = _dask_workers(identity)
    tasks = _dask_counts(replies["counts"])
    known = workers is not None
    memory_used = sum(w["memory"] or 0 for w in workers) if known else None
    collection.data = {
        # The scheduler's HTTP server does not publish its version.
        "dask_version": None,
        "scheduler": {
            "id": text(dig(identity, "id")),
            "address": text(dig(identity, "address")),
            "started": num(dig(identity, "started")),
        },
        "workers": workers[:MAX_ITEMS] if known else None,
        "workers_total": len(workers) if known else None,
        "nodes": _dask_nodes(workers[:MAX_ITEMS]) if known else None,
        "resources": {
            "workers": len(workers)
            if known
            else num(dig(replies["counts"], "workers")),
            "threads": _total(workers, "nthreads", num(dig(identity, "total_threads"))),
            "memory": {
                "used": memory_used,
                "total": _total(
                    workers, "memory_limit", num(dig(identity, "total_memory"))
                ),
            },
            "cpu_percent": _mean([w["cpu_percent"] for w in workers or []]),
        },
        "tasks": tasks,
    }
    resources = collection.data["resources"]
    collection.sample = {
        "workers": resources["workers"],
        "threads": resources["threads"],
        "memory_used": resources["memory"]["used"],
        "memory_total": resources["memory"]["total"],
        "cpu_percent": resources["cpu_percent"],
        "processing": dig(tasks, "processing"),
        "waiting": dig(tasks, "waiting"),
        "erred": dig(tasks, "erred"),
    }
    return collection


def _total(workers: list[dict] | None, field: str, reported: Any) -> Any:
    """Return the scheduler's own total, or the sum over the workers read."""
    if reported is not None or not workers:
        return reported
    values = [w[field] for w in workers if w[field] is not None]
    return sum(values) if values else None


async def _dask_health(client: httpclient.Client, timeout: float) -> str | None:
    """Return a warning unless the scheduler's /health answers "ok"."""
    try:
        status, body = await asyncio.wait_for(fetch_text(client, "/health"), timeout)
    except FetchError as exc:
        return storable(f"/health: {exc}")
    except TimeoutError:
        return f"/health: no answer within {timeout:.2g} s"
    body = body[:MAX_TEXT]
    if status != 200 or body.strip() != "ok":
        return f"/health: HTTP {status} {storable(body.strip()[:80])}".rstrip()
    return None


def _dask_workers(identity: Any) -> list[dict[str, Any]]:
    workers = dig(identity, "workers")
    if not isinstance(workers, dict):
        return []
    out = []
    for address, worker in workers.items():
        if not isinstance(worker, dict):
            continue
        metrics = (
            worker.get("metrics") if isinstance(worker.get("metrics"), dict) else {}
        )
        out.append(
            {
                "address": text(address),
                "name": text(worker.get("name")),
                "host": text(worker.get("host")),
                "status": text(worker.get("status")),
                "nthreads": num(worker.get("nthreads")),
                "memory_limit": num(worker.get("memory_limit")),
                "memory": num(metrics.get("memory")),  # the process's RSS, bytes
                "managed_bytes": num(metrics.get("managed_bytes")),
                "spilled_bytes": num(dig(metrics, "spilled_bytes", "disk")),
                "cpu_percent": num(metrics.get("cpu")),
                "tasks": counts(metrics.get("task_counts")),
                "last_seen": num(worker.get("last_seen")),
            }
        )
    out.sort(key=lambda w: w["address"] or "")
    return out


async def _dask_workers_page(
    client: httpclient.Client, collection: Collection, timeout: float
) -> list[dict] | None:
    """Read the workers from the scheduler's /info/main/workers.html table."""
    path = "/info/main/workers.html"
    try:
        status, page = await asyncio.wait_for(
            fetch_text(client, path, max_body=MAX_BODY), timeout
        )
    except FetchError as exc:
        collection.warnings.append(storable(str(exc)))
        return None
    except TimeoutError:
        collection.warnings.append(f"{path}: no answer within {timeout:.2g} s")
        return None
    if status != 200:
        collection.warnings.append(f"{path}: HTTP {status}")
        return None
    table = _WorkerTable()
    try:
        table.feed(page)
        table.close()
    except Exception as exc:  # HTMLParser is lenient; this is belt and braces
        collection.warnings.append(f"{path}: {type(exc).__name__}")
        return None
    collection.warnings.append(
        "/json/identity.json failed (a distributed bug after tasks ran); workers "
        f"read from {path}, without status and CPU"
    )
    now = time.time()
    workers = []
    for row in table.rows:
        cell = dict(zip(table.headers, row, strict=False))
        if "worker" not in cell:
            continue
        ago = num(cell.get("last seen", {}).get("data-sort"))
        processing = num(cell.get("processing", {}).get("text"))
        workers.append(
            {
                "address": text(cell["worker"]["text"]),
                "name": text(cell.get("name", {}).get("text")),
                "host": _host(cell["worker"]["text"]),
                "status": None,
                "nthreads": num(cell.get("cores", {}).get("text")),
                "memory_limit": num(cell.get("memory", {}).get("data-sort")),
                "memory": num(cell.get("memory use", {}).get("value")),
                "managed_bytes": None,
                "spilled_bytes": None,
                "cpu_percent": None,
                "tasks": {"processing": processing} if processing is not None else {},
                "last_seen": round(now - ago, 3) if ago is not None else None,
            }
        )
    workers.sort(key=lambda w: w["address"] or "")
    return workers


def _dask_nodes(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the workers in the shape of Ray's nodes, so one reader fits both.

    A Dask worker is a process, not a host: what Ray knows of a machine (physical
    CPUs, GPUs, its worker processes) is null; the scheduler lists live workers
    only, so each is ALIVE (its own status is kept as `status`).
    """
    nodes = []
    for worker in workers:
        threads = worker["nthreads"]
        used, limit = worker["memory"], worker["memory_limit"]
        busy = worker["tasks"].get("executing", worker["tasks"].get("processing"))
        if busy is None and worker["status"] is not None:
            busy = 0  # read from identity.json, whose counts omit zeros
        if busy is not None and threads is not None:
            busy = min(busy, threads)  # a thread runs one task at a time
        memory_known = used is not None and bool(limit)
        nodes.append(
            {
                "node_id": worker["address"],
                "hostname": worker["host"],
                "ip": worker["host"],
                "state": "ALIVE",
                "is_head": False,
                "cpu_percent": worker["cpu_percent"],
                "cpus_logical": threads,
                "cpus_physical": None,
                "memory_total": limit,
                "memory_used": used,
                "memory_available": limit - used if memory_known else None,
                "memory_percent": round(100 * used / limit, 1)
                if memory_known
                else None,
                "workers": None,
                "resources": {
                    "CPU": {"used": busy, "total": threads},
                    "memory": {"used": used, "total": limit},
                },
                "gpus": None,
                "name": worker["name"],
                "status": worker["status"],
            }
        )
    return nodes


def _host(address: str) -> str | None:
    try:
        return text(urlsplit(address).hostname)
    except ValueError:
        return None


class _WorkerTable(HTMLParser):
    """Collect a table's header names and, per row, each cell's text and numbers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headers: list[str] = []
        self.rows: list[list[dict[str, str]]] = []
        self._cell: dict[str, str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head and len(self.rows) < MAX_ITEMS * 4:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = {
                "text": "",
                **{k: attributes.get(k, "") for k in ("data-sort",)},
            }
        elif tag == "progress" and self._cell is not None:
            self._cell["value"] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            cell, self._cell = self._cell, None
            cell["text"] = cell["text"].strip()
            if self._in_head:
                self.headers.append(cell["text"].lower())
            elif self.rows:
                self.rows[-1].append(cell)

    def handle_data(self, data: str) -> None:
        if self._cell is not None and len(self._cell["text"]) < MAX_TEXT:
            self._cell["text"] += data


def _dask_counts(reply: Any) -> dict[str, Any] | None:
    if not isinstance(reply, dict):
        return None
    return {name: num(reply.get(name)) for name in DASK_TASK_FIELDS}


# --- shared ------------------------------------------------------------------


def _judge(
    kind: str, url: str, replies: dict[str, Any], core: tuple[str, ...]
) -> Collection:
    """Decide the status from the replies; the optional ones only add warnings."""
    failures = {
        name: reply for name, reply in replies.items() if isinstance(reply, FetchError)
    }
    for name in core:
        # Every core endpoint of both answers a JSON object; a list or a string is
        # some other server that happens to answer on that path.
        if name not in failures and not isinstance(replies[name], dict):
            failures[name] = FetchError(
                FrameworkStatus.UNREACHABLE,
                f"{RAY_PATHS.get(name) if kind == Kind.RAY else DASK_PATHS.get(name)}: "
                f"not a {kind} dashboard's answer",
            )
    refused = [
        f for f in failures.values() if f.status == FrameworkStatus.AUTH_REQUIRED
    ]
    if refused:
        return Collection(
            kind, FrameworkStatus.AUTH_REQUIRED, url, error=_join(refused)
        )
    core_failures = [failures[name] for name in core if name in failures]
    if core_failures:
        return Collection(
            kind, FrameworkStatus.UNREACHABLE, url, error=_join(core_failures)
        )
    collection = Collection(kind, FrameworkStatus.ACTIVE, url)
    collection.warnings = [storable(str(f)) for f in failures.values()]
    return collection


def _join(failures: list[FetchError]) -> str:
    # One refused connection fails every GET alike: say it once.
    messages = dict.fromkeys(str(f) for f in failures)
    return storable("; ".join(messages))[:1000]


async def _collect(kind: str, url: str, timeout: float, work) -> Collection:
    """Run one collection under its deadline; never raise."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            collection = await work
    except FetchError as exc:  # no client could be made for this URL
        collection = Collection(kind, exc.status, url, error=storable(str(exc)))
    except TimeoutError:
        collection = Collection(
            kind,
            FrameworkStatus.UNREACHABLE,
            url,
            error=f"no complete answer within {timeout:g} s",
        )
    except Exception as exc:  # a parser bug must not stop the other framework
        collection = Collection(
            kind,
            FrameworkStatus.UNREACHABLE,
            url,
            error=storable(f"collection failed: {type(exc).__name__}: {exc}")[:1000],
        )
    collection.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    # Userinfo in the URL is sent as Basic auth, and shown nowhere.
    collection.dashboard_url = httpclient.split_credential(url)[0]
    return collection


async def collect(
    ray_url: str, ray_token: str, dask_url: str, *, timeout: float
) -> list[Collection]:
    """Collect every configured framework at once; unset URLs are skipped."""
    jobs = []
    if ray_url:
        jobs.append(collect_ray(ray_url, token=ray_token, timeout=timeout))
    if dask_url:
        jobs.append(collect_dask(dask_url, timeout=timeout))
    return list(await asyncio.gather(*jobs))

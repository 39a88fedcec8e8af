"""The network's conditions for alerting (activity.alerting): nodes, GPUs, backends.

Each returns what is true now, read from the rows the probes wrote; the alerts app
gives findings their life. A rejected node (outside the allow-list) or one not
probed yet is not down; a flapping one is left to settle (its status says so).
"""

from __future__ import annotations

from functools import partial

from activity.alerting import (
    Check,
    Condition,
    Finding,
    register,
    register_labels,
    requested_models,
)
from core.addresses import host_port
from network.choices import NodeStatus
from network.health import network_health
from network.models import OllamaNode, RpcBackend
from network.status import BACKEND_DOWN, usable_nodes

DOWN = (NodeStatus.UNHEALTHY, NodeStatus.OFFLINE)


def _nodes_in(statuses: tuple[str, ...], words: str) -> list[Finding]:
    rows = OllamaNode.objects.filter(status__in=statuses).values_list(
        "host", "port", "status", "last_error"
    )
    return [
        Finding(
            host_port(host, port),
            1.0,
            f"node {host_port(host, port)} {words} ({status}"
            + (f": {error[:200]}" if error else "")
            + ")",
        )
        for host, port, status, error in rows
    ]


def nodes_down(check: Check) -> list[Finding]:
    return _nodes_in(DOWN, "is down")


def nodes_unauthorized(check: Check) -> list[Finding]:
    return _nodes_in((NodeStatus.UNAUTHORIZED,), "refuses the dashboard's credential")


def backends_down(check: Check) -> list[Finding]:
    rows = RpcBackend.objects.filter(status__in=BACKEND_DOWN).values_list(
        "host", "port", "status"
    )
    return [
        Finding(
            host_port(host, port),
            1.0,
            f"RPC backend {host_port(host, port)} is {state}",
        )
        for host, port, state in rows
    ]


def fleet_critical(check: Check) -> list[Finding]:
    health = network_health(now=check.now)
    if health["status"] != "critical":
        return []
    return [
        Finding("fleet", 1.0, "the fleet is critical: " + "; ".join(health["reasons"]))
    ]


def gpus_full(check: Check) -> list[Finding]:
    """A node's GPU memory in use over the threshold (its GPU exporter's numbers)."""
    share = check.threshold if check.threshold is not None else 0.9
    found = []
    rows = check.once(
        "nodes' GPUs",
        lambda: list(
            OllamaNode.objects.exclude(gpus=[]).values_list("host", "port", "gpus")
        ),
    )
    for host, port, gpus in rows:
        worst = None
        for gpu in gpus or ():
            if type(gpu) is not dict:
                continue
            total, used = gpu.get("memory_total"), gpu.get("memory_used")
            if type(total) in (int, float) and total > 0 and type(used) in (int, float):
                if worst is None or used / total > worst[0]:
                    worst = (used / total, gpu.get("index", "?"))
        if worst is not None and worst[0] > share:
            node = host_port(host, port)
            found.append(
                Finding(
                    node, worst[0], f"GPU {worst[1]} of {node} is {worst[0]:.0%} full"
                )
            )
    return found


def nodes_saturated(check: Check) -> list[Finding]:
    """Every slot busy and requests waiting (the servers that tell: llama-server...)."""
    found = []
    rows = OllamaNode.objects.exclude(serving={}).values_list("host", "port", "serving")
    for host, port, serving in rows:
        busy = (serving or {}).get("slots_busy")
        total = (serving or {}).get("slots_total")
        waiting = (serving or {}).get("requests_waiting")
        numbers = all(type(v) in (int, float) for v in (busy, total, waiting))
        if numbers and total > 0 and busy >= total and waiting > 0:
            node = host_port(host, port)
            found.append(
                Finding(
                    node,
                    float(waiting),
                    f"node {node}: all {total:g} slots busy, "
                    f"{waiting:g} requests waiting",
                )
            )
    return found


def _names(models: object) -> set[str]:
    names = set()
    for model in models if isinstance(models, list) else ():
        if type(model) is dict:
            name = model.get("name") or model.get("model")
            if isinstance(name, str):
                names.add(name)
                names.add(name.removesuffix(":latest"))
    return names


def models_unavailable(check: Check) -> list[Finding]:
    """Models asked for in the window that no usable node has, loaded or on disk."""
    wanted = requested_models(check)
    if not wanted:
        return []
    held: set[str] = set()
    rows = OllamaNode.objects.filter(usable_nodes()).values_list(
        "disk_models", "loaded_models"
    )
    for disk, loaded in rows:
        held |= _names(disk) | _names(loaded)
    minutes = check.window.total_seconds() / 60
    return [
        Finding(
            model,
            float(requests),
            f"{requests} requests for {model} in the last {minutes:g} min, "
            "and no usable node has it",
        )
        for model, requests in sorted(wanted.items())
        if model not in held and model.removesuffix(":latest") not in held
    ]


for condition in (
    Condition(
        "model_unavailable",
        "Model no usable node has",
        "model",
        "critical",
        None,
        "requests",
        models_unavailable,
        window=300.0,
    ),
    Condition("node_down", "Node down", "node", "critical", None, "", nodes_down),
    Condition(
        "node_unauthorized",
        "Node refuses the dashboard",
        "node",
        "warning",
        None,
        "",
        nodes_unauthorized,
    ),
    Condition(
        "backend_down",
        "RPC backend offline",
        "backend",
        "critical",
        None,
        "",
        backends_down,
    ),
    Condition(
        "fleet_critical",
        "Fleet critical",
        "fleet",
        "critical",
        None,
        "",
        fleet_critical,
    ),
    Condition(
        "gpu_memory_high",
        "GPU memory nearly full",
        "node",
        "warning",
        0.9,
        "ratio",
        gpus_full,
    ),
    Condition(
        "node_saturated",
        "Node saturated",
        "node",
        "warning",
        None,
        "requests",
        nodes_saturated,
    ),
):
    register(condition)


def _labelled(model: type[OllamaNode] | type[RpcBackend]) -> dict[str, dict[str, str]]:
    """{host:port: labels} of the nodes or backends that have labels, named as
    their findings name them; read once a round (activity.alerting.labels_of)."""
    rows = (
        model.objects.exclude(labels={})
        .order_by()
        .values_list("host", "port", "labels")
    )
    return {host_port(host, port): labels for host, port, labels in rows}


register_labels("node", partial(_labelled, OllamaNode))
register_labels("backend", partial(_labelled, RpcBackend))

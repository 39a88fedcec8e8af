"""Opt-in subnet scanning: only the CIDRs an operator lists in SOLLOL_DISCOVERY_CIDRS.

Never on a request path: Celery beat (or the embedded scheduler) runs it every
SOLLOL_DISCOVERY_RESCAN_INTERVAL; what it finds is stored, which is the cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging

from django.conf import settings

from core import httpclient
from core.addresses import KIND_PORTS, OLLAMA_PORT, RPC_PORT
from network import allowlist, servers
from network.choices import Source
from network.services import lifecycle

logger = logging.getLogger(__name__)

MAX_ADDRESSES = 1024  # a /22 of IPv4 per entry at most
# Each kind's default port: 11434 (Ollama), 8080 (llama-server, LocalAI), 8000
# (vLLM), 30000 (SGLang), 3000 (TGI), 1234 (LM Studio).
NODE_PORTS = sorted(set(KIND_PORTS.values()))
IDENTIFY_TIMEOUT = 2.0
CONNECT_TIMEOUT = 0.3
CONCURRENCY = 256


def scan_hosts(cidrs: list[str]) -> list[str]:
    """Return the addresses to scan; refuse (and log) entries that are too large."""
    hosts: dict[str, None] = {}
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            logger.error("SOLLOL_DISCOVERY_CIDRS: %r is not a network; skipped", cidr)
            continue
        if network.num_addresses > MAX_ADDRESSES:
            logger.error(
                "SOLLOL_DISCOVERY_CIDRS: %s has %d addresses, more than the %d "
                "scanned per entry; split it into smaller networks",
                network,
                network.num_addresses,
                MAX_ADDRESSES,
            )
            continue
        for host in network.hosts() if network.num_addresses > 2 else network:
            hosts[str(host)] = None
    return list(hosts)


async def _open(host: str, port: int, limit: asyncio.Semaphore) -> bool:
    async with limit:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            return False
        # Nothing is sent: an RPC server must never see a half request.
        writer.close()
        return True


async def scan(hosts: list[str], ports: list[int]) -> dict[int, list[str]]:
    """Return, for each port, the hosts that accept a TCP connection on it."""
    limit = asyncio.Semaphore(CONCURRENCY)
    targets = [(host, port) for host in hosts for port in ports]
    found = await asyncio.gather(*(_open(host, port, limit) for host, port in targets))
    open_ports: dict[int, list[str]] = {port: [] for port in ports}
    for (host, port), accepted in zip(targets, found, strict=True):
        if accepted:
            open_ports[port].append(host)
    return open_ports


def scan_configured(*, now: dt.datetime) -> dict[str, int]:
    """Scan the configured subnets and add what answers; return the counts."""
    hosts = scan_hosts(settings.SOLLOL_DISCOVERY_CIDRS)
    if not hosts:
        return {"scanned": 0, "nodes": 0, "backends": 0}
    found = asyncio.run(scan(hosts, [*NODE_PORTS, RPC_PORT]))
    nodes = add_found_nodes(
        {port: found[port] for port in NODE_PORTS}, now=now, ollama_port=OLLAMA_PORT
    )
    backends = lifecycle.ensure_backends(
        [f"{host}:{RPC_PORT}" for host in found[RPC_PORT]], source=Source.SCAN, now=now
    )
    return {"scanned": len(hosts), "nodes": len(nodes), "backends": len(backends)}


def add_found_nodes(
    found: dict[int, list[str]], *, now: dt.datetime, ollama_port: int
) -> list:
    """Add the nodes a scan found; return the new ones.

    On Ollama's port, an Ollama node, as ever. On the other kinds' ports, only
    what answers as an inference server (network.servers.detect_kind), as the
    kind it answers as: a web application on 8080 is not a node. Nothing
    outside SOLLOL_ALLOWED_NODE_CIDRS is asked anything.
    """
    entries = [f"{host}:{ollama_port}" for host in found.get(ollama_port, [])]
    others = [
        (host, port)
        for port, hosts in found.items()
        if port != ollama_port
        for host in hosts
        if not allowlist.literal_refusal(host)
    ]
    kinds = asyncio.run(_identify_all(others)) if others else []
    entries += [
        f"{kind}+http://{host}:{port}"
        for (host, port), kind in zip(others, kinds, strict=True)
        if kind
    ]
    return lifecycle.ensure_nodes(entries, source=Source.SCAN, now=now)


async def _identify_all(targets: list[tuple[str, int]]) -> list[str | None]:
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpclient.Pool(connections=CONCURRENCY) as pool:
        return await asyncio.gather(
            *(_identify(host, port, limit, pool) for host, port in targets)
        )


async def _identify(
    host: str, port: int, limit: asyncio.Semaphore, pool: httpclient.Pool
) -> str | None:
    async with limit:
        try:
            async with (
                asyncio.timeout(IDENTIFY_TIMEOUT),
                httpclient.Client(
                    f"http://{host}:{port}",
                    max_body=servers.MAX_METRICS_BODY,
                    pool=pool,
                ) as client,
            ):
                return await servers.detect_kind(client)
        except (TimeoutError, httpclient.HttpError, ValueError):
            return None

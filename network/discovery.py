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

from core.addresses import OLLAMA_PORT, RPC_PORT
from network.choices import Source
from network.services import lifecycle

logger = logging.getLogger(__name__)

MAX_ADDRESSES = 1024  # a /22 of IPv4 per entry at most
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
    found = asyncio.run(scan(hosts, [OLLAMA_PORT, RPC_PORT]))
    nodes = lifecycle.ensure_nodes(
        [f"{host}:{OLLAMA_PORT}" for host in found[OLLAMA_PORT]],
        source=Source.SCAN,
        now=now,
    )
    backends = lifecycle.ensure_backends(
        [f"{host}:{RPC_PORT}" for host in found[RPC_PORT]], source=Source.SCAN, now=now
    )
    return {"scanned": len(hosts), "nodes": len(nodes), "backends": len(backends)}

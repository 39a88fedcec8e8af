"""Which addresses the dashboard may contact for what it was told about (SSRF).

Used for nodes and backends added through the API or reported by applications
(network/allowlist.py) and for alert channels made through the API (alerts/).

The operator's own sources (configuration, localhost, the opt-in scan) are trusted.
Addresses added through the API or reported by applications are contacted only when
every address they resolve to lies in SOLLOL_ALLOWED_NODE_CIDRS (default: loopback
and the private ranges where fleets live). Link-local (169.254.169.254 is the cloud
metadata service), multicast and unspecified addresses are refused whatever the
setting says, and so are the cloud metadata services outside link-local and
IPv6 addresses that lead to a refused IPv4 one. The probe then connects to the
address that was checked, so a DNS answer that changes between the check and the
connection changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """The address may not be contacted; the message says why, for the operator."""


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def allowed_networks() -> tuple[Network, ...]:
    return _networks(tuple(settings.SOLLOL_ALLOWED_NODE_CIDRS))


# Cloud metadata services outside link-local: AWS's IPv6 one lies in fc00::/7,
# which the default allows; Alibaba's in the carrier-grade NAT range.
METADATA_SERVICES = frozenset(
    ipaddress.ip_address(ip) for ip in ("fd00:ec2::254", "100.100.100.200")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (mapped, 6to4, NAT64), if any."""
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_address(ip: str) -> None:
    """Raise Refused unless the dashboard may contact this IP address."""
    address = ipaddress.ip_address(ip.strip("[]"))
    if isinstance(address, ipaddress.IPv6Address):
        address = _embedded_ipv4(address) or address
    if address in METADATA_SERVICES:
        raise Refused(f"{address} is a cloud metadata service")
    if address.is_link_local:
        raise Refused(f"{address} is link-local (cloud metadata lives there)")
    if address.is_multicast or address.is_unspecified:
        raise Refused(f"{address} is not a single host")
    if not any(address in network for network in allowed_networks()):
        raise Refused(f"{address} is outside SOLLOL_ALLOWED_NODE_CIDRS")


def literal_refusal(host: str) -> str | None:
    """Return why an IP literal may not be contacted; None for allowed or a name."""
    try:
        check_address(host)
    except ValueError:
        return None  # a host name: decided when it is resolved, at probe time
    except Refused as refusal:
        return str(refusal)
    return None


async def resolve_allowed(host: str, port: int, *, timeout: float) -> str:
    """Return the address to connect to for host; raise Refused or OSError.

    Every address the name resolves to must be allowed, not just the first: the
    connection must not be steered to a refused one by the order of the answers.
    """
    try:
        check_address(host)
        return host.strip("[]")
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(answer[4][0] for answer in answers))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        try:
            check_address(address)
        except Refused as refusal:
            raise Refused(f"{host} resolves to {refusal}") from None
    return addresses[0]

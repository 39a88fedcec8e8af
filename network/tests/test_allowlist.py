"""SSRF: what the dashboard is told about is contacted only where it is allowed.

Every test that could reach a refused address intercepts outgoing connections, so a
broken gate shows as a failed assertion here, never as traffic off this machine.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from activity.models import Event
from network.choices import Source
from network.cycle import run_cycle
from network.models import OllamaNode, RpcBackend
from network.services import lifecycle
from simulator.ollama import running_fleet

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connections(monkeypatch) -> list[tuple[str, int]]:
    """Record every connection the probes open; refuse those off loopback.

    Caught where every asyncio client connects a socket, whichever HTTP client
    the probes use (aiohttp's happy eyeballs, asyncio.open_connection for RPC).
    """
    attempted: list[tuple[str, int]] = []
    loop_class = asyncio.selector_events.BaseSelectorEventLoop
    real = loop_class.sock_connect
    # The channel layer's Redis connects through the same loop code.
    redis = urlsplit(settings.REDIS_URL) if settings.REDIS_URL else None
    layer = set()
    if redis:
        port = redis.port or 6379
        layer = {(redis.hostname, port)} | {
            (answer[4][0], port)
            for answer in socket.getaddrinfo(
                redis.hostname, port, type=socket.SOCK_STREAM
            )
        }

    async def guarded(self, sock, address):
        host, port = address[:2]
        if (host, port) not in layer:
            attempted.append((host, port))
        if not str(host).startswith("127."):
            raise ConnectionRefusedError(f"test refused a connection to {host}")
        return await real(self, sock, address)

    monkeypatch.setattr(loop_class, "sock_connect", guarded)
    return attempted


class FakeDns(dict):
    """Names this test's DNS knows (name: addresses), and every name looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[str] = []


@pytest.fixture
def resolver(monkeypatch) -> FakeDns:
    """Names this test's DNS knows; anything else does not resolve."""
    names = FakeDns()

    async def getaddrinfo(self, host, port, *args, **kwargs):
        names.lookups.append(host)
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in names[host]
        ]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return names


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "link-local"),
        ("[fe80::1]", "link-local"),
        ("192.0.2.10", "outside SOLLOL_ALLOWED_NODE_CIDRS"),
        ("224.0.0.1", "not a single host"),
        ("0.0.0.0", "not a single host"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[2002:a9fe:a9fe::1]", "link-local"),  # 6to4 of 169.254.169.254
        ("[64:ff9b::a9fe:a9fe]", "link-local"),  # NAT64 of it
        ("[fd00:ec2::254]", "cloud metadata"),  # inside the allowed fc00::/7
        ("100.100.100.200", "cloud metadata"),
    ],
)
def test_an_api_node_outside_the_allowed_ranges_is_stored_as_rejected(
    client, connections, address, why
):
    response = client.post(
        "/api/network/nodes",
        json.dumps({"url": f"{address}:11434"}),
        content_type="application/json",
    )
    assert response.status_code == 201
    node = response.json()["node"]
    assert node["status"] == "rejected"
    assert why in node["last_error"]
    run_cycle(now=timezone.now())
    assert connections == []
    assert OllamaNode.objects.get().status == "rejected"


def test_allowed_nodes_from_every_source_are_probed(client, connections):
    with running_fleet(2, base="127.0.0.2", port=0, seed=5) as fleet:
        lifecycle.add_node(fleet.urls[0], now=timezone.now())
        lifecycle.ensure_reported({"nodes": [fleet.urls[1]]}, now=timezone.now())
        run_cycle(now=timezone.now())
    assert set(OllamaNode.objects.values_list("status", flat=True)) == {"healthy"}
    assert {host for host, _ in connections} == {"127.0.0.2", "127.0.0.3"}


@override_settings(SOLLOL_ALLOWED_NODE_CIDRS=["127.0.0.2/32"])
def test_the_operator_narrows_the_ranges_but_trusts_its_own_configuration(
    connections,
):
    with running_fleet(3, base="127.0.0.2", port=0, seed=5) as fleet:
        now = timezone.now()
        lifecycle.add_node(fleet.urls[0], now=now)  # 127.0.0.2: inside
        lifecycle.add_node(fleet.urls[1], now=now)  # 127.0.0.3: outside
        lifecycle.ensure_nodes([fleet.urls[2]], source=Source.CONFIG, now=now)
        run_cycle(now=timezone.now())
        statuses = dict(OllamaNode.objects.values_list("url", "status"))
    assert statuses == {
        fleet.urls[0]: "healthy",
        fleet.urls[1]: "rejected",
        fleet.urls[2]: "healthy",  # 127.0.0.4, configured by the operator
    }
    assert ("127.0.0.3", fleet.nodes[1].port) not in connections


def test_a_name_is_checked_where_it_resolves_and_the_checked_address_is_used(
    connections, resolver
):
    with running_fleet(1, base="127.0.0.2", port=0, seed=5) as fleet:
        port = fleet.nodes[0].port
        resolver["gpu-box.local"] = ["127.0.0.2"]
        resolver["metadata.evil"] = ["127.0.0.5", "169.254.169.254"]
        now = timezone.now()
        good, _ = lifecycle.add_node(f"gpu-box.local:{port}", now=now)
        evil, _ = lifecycle.add_node(f"metadata.evil:{port}", now=now)
        lost, _ = lifecycle.add_node(f"nowhere.invalid:{port}", now=now)
        assert good.status == evil.status == lost.status == "unknown"
        run_cycle(now=timezone.now())
        good.refresh_from_db(), evil.refresh_from_db(), lost.refresh_from_db()
    assert good.status == "healthy", good.last_error
    assert evil.status == "rejected"
    assert "resolves to 169.254.169.254 is link-local" in evil.last_error
    assert lost.status == "unhealthy" and "cannot resolve" in lost.last_error
    # Connected by the checked address, never by the name, never to the others:
    # the name was looked up once, by the check.
    assert connections == [("127.0.0.2", port)]
    assert resolver.lookups.count("gpu-box.local") == 1
    change = Event.objects.filter(type="status_change", payload__node=evil.url).get()
    assert change.payload["new_status"] == "rejected"


def test_backends_reported_by_apps_are_gated_the_same_way(connections):
    lifecycle.ensure_reported(
        {"rpc_backends": ["169.254.169.254:50052", "127.0.0.9:1"]},
        now=timezone.now(),
    )
    run_cycle(now=timezone.now())
    statuses = dict(RpcBackend.objects.values_list("address", "status"))
    assert statuses == {"169.254.169.254:50052": "rejected", "127.0.0.9:1": "offline"}
    assert connections == [("127.0.0.9", 1)]


def test_widening_the_ranges_lets_a_rejected_node_be_probed(connections):
    with running_fleet(1, base="127.0.0.2", port=0, seed=5) as fleet:
        with override_settings(SOLLOL_ALLOWED_NODE_CIDRS=["10.0.0.0/8"]):
            node, _ = lifecycle.add_node(fleet.urls[0], now=timezone.now())
            run_cycle(now=timezone.now())
            node.refresh_from_db()
            assert node.status == "rejected"
        run_cycle(now=timezone.now())  # defaults again: loopback is allowed
        node.refresh_from_db()
    assert node.status == "healthy"
    types = list(
        Event.objects.filter(stream="nodes").values_list(
            "payload__new_status", flat=True
        )
    )
    assert types[-1] == "healthy"


def test_health_mentions_rejected_nodes_without_calling_the_fleet_unhealthy(client):
    lifecycle.add_node("169.254.169.254", now=timezone.now())
    health = client.get("/api/network/health").json()
    assert health["nodes_rejected"] == 1
    assert "not contacted" in health["notes"][0]
    assert health["status"] == "unknown"  # nothing usable has been probed yet


def test_a_malformed_range_stops_the_dashboard_at_start_up():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "SOLLOL_ALLOWED_NODE_CIDRS": "10.0.0.0/8,not-a-range"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SOLLOL_ALLOWED_NODE_CIDRS" in result.stderr
    assert "not-a-range" in result.stderr

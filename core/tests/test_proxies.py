"""X-Forwarded-For is believed from the proxies the operator names, and only them."""

from __future__ import annotations

import pytest
from django.test import override_settings

from core.proxies import UNTRUSTED_FORWARD, client_address, resolve
from sollol_site.tests.test_ratelimit import call, http_scope

NGINX = ["127.0.0.1", "10.9.0.0/24"]


@override_settings(SOLLOL_TRUSTED_PROXIES=NGINX)
@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        # What a client wrote itself comes first; its proxies' additions after.
        ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
        # A client on the proxy's machine cannot pass for another by writing one.
        ("127.0.0.1", "198.51.100.7, 127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "10.9.0.4", "10.9.0.4"),
        ("127.0.0.1", None, "127.0.0.1"),
        # Not a proxy of ours: the header is anyone's writing.
        ("127.0.0.2", "198.51.100.7", "127.0.0.2"),
        ("192.0.2.1", "127.0.0.1", "192.0.2.1"),
    ],
)
def test_the_client_is_the_address_the_trusted_proxy_saw(peer, forwarded, client):
    assert client_address(peer, forwarded) == client


def test_without_trusted_proxies_no_header_is_believed():
    scope = http_scope(
        "GET", "/", "127.0.0.1", ((b"x-forwarded-for", b"198.51.100.7"),)
    )
    resolved = resolve(scope)
    assert resolved["client"][0] == "127.0.0.1"
    assert resolved[UNTRUSTED_FORWARD] is True
    assert resolve(resolved) is resolved  # once


@override_settings(SOLLOL_TRUSTED_PROXIES=NGINX)
def test_a_trusted_proxy_gives_the_client_and_the_scheme():
    scope = http_scope(
        "GET",
        "/",
        "127.0.0.1",
        ((b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"https")),
    )
    resolved = resolve(scope)
    assert resolved["client"][0] == "198.51.100.7"
    assert resolved["scheme"] == "https"
    assert UNTRUSTED_FORWARD not in resolved


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_WRITE_RATE=1.0, SOLLOL_WRITE_BURST=2.0)
async def test_a_local_script_cannot_pick_its_own_rate_limit_bucket():
    async def write(client: str, forwarded: bytes) -> int:
        status, _, _ = await call(
            "POST", "/api/logs", client, b"[]", ((b"x-forwarded-for", forwarded),)
        )
        return status

    # Not a trusted proxy: every invented address is the same client.
    statuses = [await write("127.0.0.21", f"10.0.0.{i}".encode()) for i in range(4)]
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]
    # Through nginx (trusted), each client has its own bucket.
    with override_settings(SOLLOL_TRUSTED_PROXIES=["127.0.0.22"]):
        statuses = [await write("127.0.0.22", f"10.0.1.{i}".encode()) for i in range(4)]
    assert statuses == [200, 200, 200, 200]

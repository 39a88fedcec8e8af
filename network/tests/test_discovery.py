from __future__ import annotations

import asyncio

import pytest

from network.discovery import scan, scan_hosts
from simulator.ollama import running_fleet


def test_it_scans_only_what_the_operator_listed_and_nothing_too_large(caplog):
    hosts = scan_hosts(["127.0.0.0/30", "127.0.0.8/32", "127.0.0.0/16", "nonsense"])
    assert hosts == ["127.0.0.1", "127.0.0.2", "127.0.0.8"]
    assert "more than the 1024 scanned per entry" in caplog.text
    assert "'nonsense' is not a network" in caplog.text


def test_it_finds_what_listens_without_sending_it_anything():
    with running_fleet(2, base="127.0.0.2", port=0) as fleet:
        port = fleet.nodes[0].port
        other = fleet.nodes[1].port
        found = asyncio.run(
            scan(["127.0.0.2", "127.0.0.3", "127.0.0.9"], [port, other])
        )
        assert found == {port: ["127.0.0.2"], other: ["127.0.0.3"]}
        assert sum(fleet.nodes[0].snapshot()["requests"].values()) == 0


@pytest.mark.django_db
def test_it_scans_nothing_unless_asked(settings):
    from django.utils import timezone

    from network.discovery import scan_configured

    settings.SOLLOL_DISCOVERY_CIDRS = []
    assert scan_configured(now=timezone.now()) == {
        "scanned": 0,
        "nodes": 0,
        "backends": 0,
    }


@pytest.mark.django_db(transaction=True)
def test_a_scan_adds_what_answers_as_an_inference_server_as_its_kind():
    import http.server
    import threading

    from django.utils import timezone

    from network.discovery import add_found_nodes
    from network.models import OllamaNode
    from simulator.servers import SimulatedServer, running_servers

    # A web application on a port inference servers use is not a node.
    web = http.server.ThreadingHTTPServer(
        ("127.0.0.85", 0), http.server.SimpleHTTPRequestHandler
    )
    threading.Thread(target=web.serve_forever, daemon=True).start()
    llama = SimulatedServer("llamacpp", "127.0.0.83")
    vllm = SimulatedServer("vllm", "127.0.0.84")
    try:
        with (
            running_servers(llama, vllm),
            running_fleet(1, base="127.0.0.86", port=0) as fleet,
        ):
            ollama = fleet.nodes[0]
            found = {
                ollama.port: ["127.0.0.86"],
                llama.port: ["127.0.0.83"],
                vllm.port: ["127.0.0.84"],
                web.server_address[1]: ["127.0.0.85"],
            }
            added = add_found_nodes(found, now=timezone.now(), ollama_port=ollama.port)
    finally:
        web.shutdown()
        web.server_close()
    assert len(added) == 3
    assert dict(OllamaNode.objects.values_list("url", "kind")) == {
        ollama.url: "ollama",
        llama.url: "llamacpp",
        vllm.url: "vllm",
    }
    assert set(OllamaNode.objects.values_list("source", flat=True)) == {"scan"}

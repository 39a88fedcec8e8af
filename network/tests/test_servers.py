"""Inference servers other than Ollama: declared by kind, probed through what each
exposes (network/servers.py), their work stored with rates, routed to by the gateway
for the OpenAI-compatible API only."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import threading

import pytest
import requests
from django.test import override_settings
from django.utils import timezone

from activity.models import Event
from core.addresses import node_url
from core.jsonio import PayloadError
from network import gpus, servers
from network.choices import Source
from network.cycle import run_cycle
from network.gateway.routing import NodeView, model_key
from network.models import OllamaNode, RpcBackend
from network.probes import probe_node
from network.services import lifecycle
from network.services.recording import serving_with_rates
from network.tests.gateway_harness import served_gateway, view_of
from simulator.ollama import running_fleet
from simulator.rpc import running_rpc_server
from simulator.servers import (
    KINDS,
    SimulatedGpuExporter,
    SimulatedServer,
    running_servers,
)
from tests.test_prometheus import scrape, value

# The pages as each project's source writes them (see network/servers.py).
VLLM_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 4.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 123.0
# HELP vllm:prompt_tokens_created Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_created gauge
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7962993171106243e+09
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 456.0
"""
SGLANG_PAGE = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="q",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 3.0
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{engine_type="unified",is_streaming="true",model_name="q"} 42.0
sglang:generation_tokens_total{engine_type="unified",is_streaming="false",model_name="q"} 8.0
"""  # noqa: E501
# llama.cpp before mid-2025 still had its KV-cache ratio.
OLD_LLAMACPP_PAGE = """\
# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.
# TYPE llamacpp:kv_cache_usage_ratio gauge
llamacpp:kv_cache_usage_ratio 0.5
# HELP llamacpp:requests_processing Number of request processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
"""


def test_metrics_pages_are_read_by_each_kinds_names_summed_over_label_sets():
    gauges, counters = servers.read_metrics(VLLM_PAGE, servers.METRICS["vllm"])
    # Two engines' running requests add up; the older cache name still counts.
    assert gauges == {
        "requests_running": 3,
        "requests_waiting": 4,
        "kv_cache_usage": 0.25,
    }
    assert counters == {"prompt_tokens": 123, "generated_tokens": 456}
    gauges, counters = servers.read_metrics(SGLANG_PAGE, servers.METRICS["sglang"])
    assert gauges == {"requests_running": 3}
    assert counters == {"generated_tokens": 50}
    gauges, counters = servers.read_metrics(
        OLD_LLAMACPP_PAGE, servers.METRICS["llamacpp"]
    )
    assert gauges == {"requests_running": 1, "kv_cache_usage": 0.5}
    assert counters == {}


@pytest.mark.parametrize(
    ("page", "why"),
    [
        ("vllm:num_requests_running{ 2\n", "does not parse"),
        ("vllm:prompt_tokens_total -5\n", "vllm:prompt_tokens is negative"),
        ("<html>502 Bad Gateway</html>\n", "none of vllm:num_requests_running"),
    ],
)
def test_a_page_that_cannot_be_read_says_why(page, why):
    with pytest.raises(servers.MetricsError, match=why):
        servers.read_metrics(page, servers.METRICS["vllm"])


def test_nan_and_infinite_samples_are_left_out():
    page = "vllm:num_requests_running NaN\nvllm:num_requests_waiting +Inf\n"
    assert servers.read_metrics(page, servers.METRICS["vllm"]) == ({}, {})


def test_nodes_are_declared_with_their_kind_and_its_default_port():
    assert node_url("llamacpp+http://127.0.0.2") == (
        "http://127.0.0.2:8080",
        "127.0.0.2",
        8080,
        None,
        "llamacpp",
    )
    assert node_url("vllm+http://127.0.0.2").port == 8000
    assert node_url("sglang+http://127.0.0.2").port == 30000
    assert node_url("http://127.0.0.2").kind is None  # Ollama's, as before
    with pytest.raises(PayloadError, match="'foo' is not a kind of node"):
        node_url("foo+http://127.0.0.2")


def test_rates_come_from_successive_counters_and_a_reset_is_a_restart():
    first = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    serving, kept = serving_with_rates(
        {"slots_busy": 1}, {}, {"prompt_tokens": 100, "generated_tokens": 50}, first
    )
    assert serving == {"slots_busy": 1}  # nothing to compare with yet
    later = first + dt.timedelta(seconds=2)
    serving, kept = serving_with_rates(
        {}, kept, {"prompt_tokens": 300, "generated_tokens": 150}, later
    )
    assert serving == {
        "prompt_tokens_per_second": 100.0,
        "generation_tokens_per_second": 50.0,
    }
    restarted = later + dt.timedelta(seconds=2)
    serving, kept = serving_with_rates(
        {}, kept, {"prompt_tokens": 10, "generated_tokens": 5}, restarted
    )
    assert serving == {"restarted": True}  # not a negative rate
    assert kept["prompt_tokens"] == 10  # the next rate starts from here
    # A probe that could not read the counters keeps the last ones: the work done
    # meanwhile shows in the next rate, over the whole time since.
    missed = restarted + dt.timedelta(seconds=2)
    serving, kept = serving_with_rates({"slots_busy": 0}, kept, None, missed)
    assert serving == {"slots_busy": 0} and kept["prompt_tokens"] == 10
    read = missed + dt.timedelta(seconds=2)
    serving, kept = serving_with_rates(
        {}, kept, {"prompt_tokens": 410, "generated_tokens": 205}, read
    )
    assert serving == {
        "prompt_tokens_per_second": 100.0,
        "generation_tokens_per_second": 50.0,
    }


def probe(server: SimulatedServer, **options):
    return asyncio.run(
        probe_node(server.url, timeout=3.0, with_tags=True, kind=server.kind, **options)
    )


def test_llama_server_is_read_through_health_props_slots_metrics_and_models():
    server = SimulatedServer("llamacpp", "127.0.0.61", slots=2, generation_seconds=2)
    with running_servers(server):
        # One completion holds a slot while the probe looks.
        thread = threading.Thread(
            target=requests.post,
            args=(server.url + "/v1/chat/completions",),
            kwargs={"json": {"model": "tiny-llama", "messages": []}, "timeout": 10},
        )
        thread.start()
        try:
            found = _wait_busy(server)
        finally:
            thread.join()
        assert found.ok and found.answered and not found.error
        assert found.version == "b7310-0c1e57098"
        assert found.loaded_models == [
            {
                "name": "tiny-llama",
                "model": "tiny-llama",
                "size": 481_280,
                "context_length": 4096,
            }
        ]
        assert found.serving == {
            "slots_total": 2,
            "slots_busy": 1,
            "context_per_slot": 4096,
            "requests_running": 1,
            "requests_waiting": 0,
        }
        assert found.counters == {"prompt_tokens": 0, "generated_tokens": 0}
        after = probe(server)
        assert after.serving["slots_busy"] == 0
        assert after.counters["generated_tokens"] == 16  # the reply's tokens
        # Between the times its models are due, only its work is read.
        quick = asyncio.run(
            probe_node(server.url, timeout=3.0, with_tags=False, kind="llamacpp")
        )
        assert quick.ok and quick.loaded_models is None and quick.version == ""
        assert quick.serving == {
            "slots_total": 2,
            "slots_busy": 0,
            "requests_running": 0,
            "requests_waiting": 0,
        }


def _wait_busy(server: SimulatedServer):
    for _ in range(50):
        found = probe(server)
        if found.serving and found.serving.get("slots_busy"):
            return found
    raise AssertionError("the slot never showed busy")


def test_llama_server_without_slots_or_metrics_endpoints_is_still_read():
    server = SimulatedServer(
        "llamacpp", "127.0.0.62", metrics=False, slots_endpoint=False
    )
    with running_servers(server):
        found = probe(server)
    assert found.ok and found.counters is None
    assert found.serving == {"slots_total": 2, "context_per_slot": 4096}


def test_a_loading_llama_server_answered_but_does_not_serve():
    server = SimulatedServer("llamacpp", "127.0.0.63")
    with running_servers(server):
        server.set_loading(True)
        found = probe(server)
    assert found.answered and not found.ok
    assert found.error == "/health answered HTTP 503: Loading model"


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "llamacpp"])
def test_every_other_kind_lists_its_model_and_what_its_metrics_say(kind):
    server = SimulatedServer(kind, "127.0.0.64", context=8192)
    with running_servers(server):
        requests.post(
            server.url + "/v1/chat/completions",
            json={"model": "tiny-llama", "messages": [{"content": "a b c"}]},
            timeout=5,
        )
        found = probe(server)
    assert found.ok and not found.error
    assert [m["name"] for m in found.loaded_models] == ["tiny-llama"]
    if kind in ("vllm", "sglang"):
        assert found.loaded_models[0]["context_length"] == 8192
        assert found.counters == {"prompt_tokens": 3, "generated_tokens": 16}
        assert found.serving == {
            "requests_running": 0,
            "requests_waiting": 0,
            "kv_cache_usage": 0,
        }
    elif kind == "tgi":
        assert found.serving == {"requests_running": 0, "requests_waiting": 0}
    else:  # LM Studio and LocalAI: no metrics this dashboard reads
        assert found.serving == {} and found.counters is None
    assert found.version == ("0.34.0" if kind == "vllm" else "")


def test_a_metrics_page_too_large_or_garbled_is_said_and_the_node_still_served():
    server = SimulatedServer("vllm", "127.0.0.65")
    with running_servers(server):
        server.set_metrics_page(b"# x\n" * (servers.MAX_METRICS_BODY // 3))
        large = probe(server)
        server.set_metrics_page(b"vllm:num_requests_running{ oops\n")
        garbled = probe(server)
    assert large.ok and large.error.startswith("/metrics not read: ")
    assert "over" in large.error
    assert garbled.ok and "does not parse" in garbled.error
    assert garbled.counters is None


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_PROBE_TIMEOUT=2.0)
def test_a_declared_llama_server_is_probed_by_its_kind_with_token_rates(client):
    server = SimulatedServer("llamacpp", "127.0.0.66", tokens_per_reply=40)
    with running_servers(server):
        with override_settings(SOLLOL_NODES=[f"llamacpp+{server.url}"]):
            lifecycle.sync_configured(now=timezone.now())
        node = OllamaNode.objects.get(url=server.url)
        assert (node.kind, node.source) == ("llamacpp", Source.CONFIG)
        run_cycle(now=timezone.now())
        requests.post(
            server.url + "/v1/chat/completions",
            json={"model": "tiny-llama", "messages": []},
            timeout=5,
        )
        run_cycle(now=timezone.now())
        node.refresh_from_db()
        assert node.status == "healthy"
        assert node.serving["generation_tokens_per_second"] > 0
        assert [m["name"] for m in node.loaded_models] == ["tiny-llama"]
        # Prometheus shows what the server said, labelled as every node is.
        families = scrape()
        labels = {"node": server.address}
        assert value(families, "sollol_node_slots_total", **labels) == 2
        assert value(families, "sollol_node_slots_busy", **labels) == 0
        assert value(families, "sollol_node_requests_waiting", **labels) == 0
        generation = value(
            families, "sollol_node_tokens_per_second", **labels, direction="generation"
        )
        assert generation == node.serving["generation_tokens_per_second"]
        info = {"url": server.url, "kind": "llamacpp", "version": "b7310-0c1e57098"}
        assert value(families, "sollol_node_info", **labels, **info) == 1
        server.restart_counters()
        run_cycle(now=timezone.now())
        node.refresh_from_db()
        assert node.serving["restarted"] is True
        assert "generation_tokens_per_second" not in node.serving
        listed = client.get("/api/network/nodes").json()["nodes"]
        [shown] = [n for n in listed if n["url"] == server.url]
        assert shown["kind"] == "llamacpp"
        assert shown["serving"]["restarted"] is True
        assert shown["serving"]["slots_total"] == 2
    # Declared again with another kind, the stored row follows the operator.
    with override_settings(SOLLOL_NODES=[f"vllm+{server.url}"]):
        lifecycle.sync_configured(now=timezone.now())
    assert OllamaNode.objects.get(url=server.url).kind == "vllm"


# --- the gateway ------------------------------------------------------------------


def server_view(server: SimulatedServer, *, busy: int = 0) -> NodeView:
    """What routing would know of a simulated server after a probe."""
    return NodeView(
        url=server.url,
        address=server.address,
        status="healthy",
        usable=True,
        degraded=False,
        loaded=frozenset({model_key(server.model)}),
        disk=frozenset({model_key(server.model)}),
        latency_ms=1.0,
        kind=server.kind,
        busy=busy,
    )


@pytest.mark.django_db(transaction=True)
def test_the_gateway_sends_openai_requests_to_every_kind_and_ollamas_to_ollama():
    llama = SimulatedServer("llamacpp", "127.0.0.67", model="llama3.2:3b")
    with (
        running_fleet(1, base="127.0.0.68", port=0, seed=5) as fleet,
        running_servers(llama),
    ):
        ollama_node = fleet.nodes[0]
        ollama_node.pull("llama3.2:3b")
        loaded = frozenset({"llama3.2:3b"})

        def fleet_of(ollama_latency: float = 1.0, llama_busy: int = 0) -> list:
            return [
                view_of(ollama_node, loaded=loaded, latency_ms=ollama_latency),
                server_view(llama, busy=llama_busy),
            ]

        with served_gateway(fleet_of()) as gateway:
            chat = {"model": "tiny", "messages": [{"role": "user", "content": "x"}]}
            url = f"{gateway.url}/v1/chat/completions"
            assert requests.post(url, json=chat).status_code == 404  # nobody has it
            chat["model"] = "llama3.2:3b"
            # Named, the llama-server answers OpenAI's API ...
            answer = requests.post(
                url, json=chat, headers={"X-SOLLOL-Node": llama.address}
            )
            assert answer.status_code == 200
            assert "Simulated llamacpp reply" in answer.text
            # ... never Ollama's, even when named.
            pinned = requests.post(
                f"{gateway.url}/api/chat",
                json={**chat, "stream": False},
                headers={"X-SOLLOL-Node": llama.address},
            )
            assert pinned.status_code == 400
            assert "llamacpp server" in pinned.json()["error"]
            # Both hold the model: the one that says it is busy loses ...
            gateway.set_fleet(fleet_of(llama_busy=3))
            answer = requests.post(url, json=chat)
            assert answer.status_code == 200
            assert "Simulated llamacpp" not in answer.text
            # ... and when both are idle, the faster wins, whatever its kind.
            gateway.set_fleet(fleet_of(ollama_latency=50.0))
            assert "Simulated llamacpp" in requests.post(url, json=chat).text
            # Ollama's lists are of Ollama nodes only.
            tags = requests.get(f"{gateway.url}/api/tags").json()["models"]
            assert {node for m in tags for node in m["nodes"]} == {ollama_node.address}


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_PROBE_TIMEOUT=2.0)
def test_a_saturated_server_and_its_recovery_are_events():
    server = SimulatedServer("llamacpp", "127.0.0.70", slots=1, generation_seconds=1.5)
    with running_servers(server):
        lifecycle.ensure_nodes(
            [f"llamacpp+{server.url}"], source=Source.API, now=timezone.now()
        )
        run_cycle(now=timezone.now())
        chat = {"model": "tiny-llama", "messages": []}
        threads = [
            threading.Thread(
                target=requests.post,
                args=(server.url + "/v1/chat/completions",),
                kwargs={"json": chat, "timeout": 10},
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        try:
            for _ in range(20):  # until both have arrived: one runs, one waits
                if server.running == 2:
                    break
                threading.Event().wait(0.05)
            run_cycle(now=timezone.now())
        finally:
            for thread in threads:
                thread.join()
        run_cycle(now=timezone.now())
    events = list(
        Event.objects.filter(type__in=["node_saturated", "node_recovered"]).order_by(
            "id"
        )
    )
    assert [e.type for e in events] == ["node_saturated", "node_recovered"]
    assert events[0].payload["slots_busy"] == 1
    assert events[0].payload["requests_waiting"] == 1
    assert "saturated" in events[0].message


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_PROBE_TIMEOUT=2.0)
def test_a_node_declared_without_a_kind_is_known_by_its_answers():
    simulated = [
        SimulatedServer(kind, f"127.0.0.{71 + index}")
        for index, kind in enumerate(KINDS)
    ]
    with (
        running_fleet(1, base="127.0.0.79", port=0, seed=9) as fleet,
        running_servers(*simulated),
    ):
        urls = [server.url for server in simulated] + fleet.urls
        with override_settings(SOLLOL_NODES=urls, SOLLOL_DISCOVER_LOCALHOST=False):
            lifecycle.sync_configured(now=timezone.now())
        assert set(OllamaNode.objects.values_list("kind", flat=True)) == {""}
        run_cycle(now=timezone.now())
        kinds = dict(OllamaNode.objects.values_list("url", "kind"))
        assert kinds == {
            **{server.url: server.kind for server in simulated},
            fleet.urls[0]: "ollama",
        }
        assert set(OllamaNode.objects.values_list("status", flat=True)) == {"healthy"}
        # Known now, each is read as its kind: the llama-server's slots, say.
        llama = OllamaNode.objects.get(url=simulated[0].url)
        assert llama.serving["slots_total"] == 2


# --- GPUs -------------------------------------------------------------------------

GIB = 2**30


@pytest.mark.parametrize("flavour", ["dcgm", "nvidia_smi"])
def test_each_gpu_exporters_page_reads_as_the_same_gpus(flavour):
    exporter = SimulatedGpuExporter(
        flavour,
        "127.0.0.80",
        gpus=[
            ("NVIDIA GeForce RTX 4090", 24 * GIB, 6 * GIB),
            ("NVIDIA T400 4GB", 4 * GIB, 0),
        ],
    )
    with running_servers(exporter):
        found, why = asyncio.run(gpus.probe_gpus(exporter.url, timeout=3))
    assert why == ""
    assert [(g["index"], g["name"]) for g in found] == [
        (0, "NVIDIA GeForce RTX 4090"),
        (1, "NVIDIA T400 4GB"),
    ]
    first = found[0]
    assert first["memory_used"] == 6 * GIB
    # DCGM says free and reserved MiB beside used: their sum is the GPU's memory.
    assert first["memory_total"] == 24 * GIB
    assert first["utilization"] == 0.25 and first["temperature"] == 50
    assert first["power_watts"] == 105


def test_a_page_with_no_gpu_memory_is_not_taken_for_gpus():
    with pytest.raises(ValueError, match="no GPU memory"):
        gpus.read_gpus("# TYPE up gauge\nup 1\n")
    with pytest.raises(PayloadError):
        gpus.exporter_entry("127.0.0.2:11434")  # no exporter named


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_PROBE_TIMEOUT=2.0, SOLLOL_DISCOVER_LOCALHOST=False)
def test_a_nodes_gpus_are_read_with_it_and_a_full_gpu_is_an_event(client):
    llama = SimulatedServer("llamacpp", "127.0.0.81")
    exporter = SimulatedGpuExporter(
        "dcgm", "127.0.0.82", gpus=[("NVIDIA GeForce RTX 4090", 24 * GIB, 2 * GIB)]
    )
    with running_servers(llama, exporter):
        configured = {
            "SOLLOL_NODES": [f"llamacpp+{llama.url}"],
            "SOLLOL_GPU_EXPORTERS": [f"{llama.address}={exporter.url}"],
        }
        with override_settings(**configured):
            lifecycle.sync_configured(now=timezone.now())
        run_cycle(now=timezone.now())
        exporter.set_used(0, 23 * GIB)  # 96 %: nearly full
        run_cycle(now=timezone.now())
        run_cycle(now=timezone.now())  # still full: said once
        exporter.set_used(0, 22 * GIB)  # 92 %: not room enough yet to say so
        run_cycle(now=timezone.now())
        exporter.set_used(0, 4 * GIB)
        run_cycle(now=timezone.now())
        [node] = client.get("/api/network/nodes").json()["nodes"]
        families = scrape()
    assert node["gpus"][0]["memory_used"] == 4 * GIB
    assert node["gpus"][0]["memory_total"] == 24 * GIB
    events = list(
        Event.objects.filter(type__startswith="vram_")
        .order_by("id")
        .values_list("type", "payload")
    )
    assert [kind for kind, _ in events] == ["vram_nearly_full", "vram_recovered"]
    assert events[0][1]["memory_used"] == 23 * GIB
    labels = {
        "node": llama.address,
        "gpu": "0",
        "uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "name": "NVIDIA GeForce RTX 4090",
    }
    [total] = [
        sample.value
        for family in families.values()
        for sample in family.samples
        if sample.name == "sollol_gpu_memory_total_bytes" and sample.labels == labels
    ]
    assert total == 24 * GIB
    # The operator takes the exporter away: what it said goes with it.
    with override_settings(SOLLOL_NODES=[f"llamacpp+{llama.url}"]):
        lifecycle.sync_configured(now=timezone.now())
    assert OllamaNode.objects.get().gpus == []


# --- llama.cpp distributed: coordinators and their RPC backends ---------------------


@pytest.mark.django_db(transaction=True)
@override_settings(
    SOLLOL_PROBE_TIMEOUT=0.3,
    SOLLOL_RPC_SESSION_INTERVAL=12,
    SOLLOL_DISCOVER_LOCALHOST=False,
)
def test_a_backend_held_while_a_llama_server_serves_is_that_servers(client):
    llama = SimulatedServer("llamacpp", "127.0.0.87")
    with (
        running_servers(llama),
        running_rpc_server("127.0.0.87", 0, protocol="7.0.0") as rpc,
    ):
        started = timezone.now()
        lifecycle.ensure_nodes(
            [f"llamacpp+{llama.url}"], source=Source.CONFIG, now=started
        )
        lifecycle.ensure_backends([rpc.address], source=Source.CONFIG, now=started)
        run_cycle(now=started)
        backend = RpcBackend.objects.get()
        assert (backend.status, backend.coordinator) == ("online", "")
        rpc.attach()  # the coordinator loads its model onto it and holds it
        for cycle in range(1, 4):
            run_cycle(now=started + dt.timedelta(seconds=5 * cycle))
        backend.refresh_from_db()
        assert backend.status == "busy"
        assert (backend.coordinator, backend.coordinator_source) == (
            llama.address,
            "inferred",
        )
        node_id = OllamaNode.objects.get().id
        detail = client.get(f"/api/network/nodes/{node_id}").json()
        assert detail["rpc_backends"] == [rpc.address]
        listed = client.get("/api/network/backends").json()["backends"]
        assert listed[0]["coordinator"] == llama.address
        rpc.die()  # lost mid-generation: both sides hear of it
        run_cycle(now=started + dt.timedelta(seconds=20))
    lost = Event.objects.get(type="backend_disconnected")
    assert lost.payload["coordinator"] == llama.address
    on_node = Event.objects.get(type="rpc_backend_lost")
    assert on_node.payload["backend"] == rpc.address
    assert on_node.payload["node"] == llama.url
    assert f"lost its RPC backend {rpc.address}" in on_node.message


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_PROBE_TIMEOUT=0.3, SOLLOL_DISCOVER_LOCALHOST=False)
def test_a_declared_pairing_holds_whatever_the_backend_does():
    with running_rpc_server("127.0.0.88", 0, protocol="7.0.0") as rpc:
        pairing = [f"{rpc.address}=127.0.0.89:8080"]
        lifecycle.ensure_backends(
            [rpc.address], source=Source.CONFIG, now=timezone.now()
        )
        with override_settings(SOLLOL_RPC_COORDINATORS=pairing):
            run_cycle(now=timezone.now())
    backend = RpcBackend.objects.get()
    assert backend.status == "online"
    assert (backend.coordinator, backend.coordinator_source) == (
        "127.0.0.89:8080",
        "declared",
    )


class _Garbage(http.server.BaseHTTPRequestHandler):
    """Answers every GET with what no inference server says."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b"\x00\xffnot json {{{" if self.path != "/metrics" else b"half a li"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("kind", ["llamacpp", "vllm", ""])
def test_a_node_that_answers_garbage_is_shown_with_a_reason(kind):
    garbage = http.server.ThreadingHTTPServer(("127.0.0.90", 0), _Garbage)
    threading.Thread(target=garbage.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.90:{garbage.server_address[1]}"
        found = asyncio.run(probe_node(url, timeout=3, with_tags=True, kind=kind))
    finally:
        garbage.shutdown()
        garbage.server_close()
    assert found.answered and not found.ok
    assert found.error.startswith(("unexpected reply", "answers neither"))


def test_half_a_metrics_page_gives_what_came_whole():
    cut = VLLM_PAGE.index("vllm:prompt_tokens_total{")
    for half in (VLLM_PAGE[:cut], VLLM_PAGE[: cut + 30]):
        gauges, counters = servers.read_metrics(half, servers.METRICS["vllm"])
        assert gauges["requests_running"] == 3 and counters == {}
    # Half a number is not taken for a whole one.
    line = "vllm:num_requests_running 12"
    assert servers.read_metrics(f"{line}\n{line[:-1]}", servers.METRICS["vllm"]) == (
        {"requests_running": 12},
        {},
    )


@pytest.mark.django_db(transaction=True)
@override_settings(SOLLOL_PROBE_TIMEOUT=2.0, SOLLOL_DISCOVER_LOCALHOST=False)
def test_a_server_that_serves_another_model_is_model_activity():
    server = SimulatedServer("vllm", "127.0.0.91", model="qwen2.5-7b")
    with running_servers(server):
        lifecycle.ensure_nodes(
            [f"vllm+{server.url}"], source=Source.CONFIG, now=timezone.now()
        )
        run_cycle(now=timezone.now())  # the first look is the baseline
        server.set_model("llama3.1-8b")
        run_cycle(now=timezone.now())
    events = list(
        Event.objects.filter(type__startswith="model_")
        .order_by("id")
        .values_list("type", "payload")
    )
    assert sorted((kind, payload["model"]) for kind, payload in events) == [
        ("model_loaded", "llama3.1-8b"),
        ("model_unloaded", "qwen2.5-7b"),
    ]

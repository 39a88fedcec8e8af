"""The gateway's rules without I/O: routing order, slots and queues, usage, lists."""

from __future__ import annotations

import asyncio

import pytest

from network.gateway import fanout, origins
from network.gateway.limits import Limits
from network.gateway.routing import NodeView, model_key, pinned, rank
from network.gateway.usage import Strip, read_usage


def node(address, *, loaded=(), disk=(), status="healthy", latency=5.0):
    answering = status in ("healthy", "degraded")
    return NodeView(
        url=f"http://{address}",
        address=address,
        status=status,
        usable=answering,
        degraded=status == "degraded",
        loaded=frozenset(model_key(m) for m in loaded),
        disk=frozenset(model_key(m) for m in (*disk, *loaded)),
        latency_ms=latency,
    )


def order(choice):
    return [n.address for n in choice.nodes]


def test_model_names_resolve_as_ollama_resolves_them():
    assert model_key("Llama3.2") == "llama3.2:latest"
    assert model_key("llama3.2:3b") == "llama3.2:3b"
    assert model_key("hf.co/org/model") == "hf.co/org/model:latest"
    assert model_key("registry:5000/org/model") == "registry:5000/org/model:latest"


def test_loaded_first_then_on_disk_then_fewest_in_flight_then_fastest():
    nodes = [
        node("a:1", disk=["m"], latency=1.0),
        node("b:1", loaded=["m"], latency=9.0),
        node("c:1", loaded=["m"], latency=2.0),
        node("d:1", disk=["other"]),
    ]
    assert order(rank(nodes, "m", {})) == ["c:1", "b:1", "a:1"]
    # Busy c: in flight (or waiting) counts before speed.
    assert order(rank(nodes, "m", {"c:1": 2, "b:1": 1})) == ["b:1", "c:1", "a:1"]
    # ... but never before holding the model in memory.
    assert order(rank(nodes, "m", {"c:1": 9, "b:1": 9})) == ["c:1", "b:1", "a:1"]


def test_degraded_nodes_only_when_no_healthy_one_has_the_model():
    nodes = [
        node("slow:1", loaded=["m"], status="degraded"),
        node("cold:1", disk=["m"]),
        node("gone:1", loaded=["m"], status="offline"),
    ]
    assert order(rank(nodes, "m", {})) == ["cold:1", "slow:1"]
    assert order(rank(nodes[:1], "m", {})) == ["slow:1"]


def test_unknown_models_and_models_only_on_unusable_nodes_differ():
    nodes = [node("a:1", loaded=["m"], status="unauthorized"), node("b:1", disk=["x"])]
    missing = rank(nodes, "nope", {})
    assert not missing.known and not missing.nodes
    stranded = rank(nodes, "m", {})
    assert stranded.known and not stranded.nodes
    assert stranded.reason == "no usable node has model 'm'"


def test_a_pinned_node_is_found_by_address_or_url():
    nodes = [node("127.0.0.2:11434"), node("127.0.0.3:11434")]
    assert pinned(nodes, "127.0.0.3:11434").address == "127.0.0.3:11434"
    assert pinned(nodes, "http://127.0.0.2:11434/").address == "127.0.0.2:11434"
    assert pinned(nodes, "127.0.0.99:11434") is None


async def test_slots_are_taken_in_order_and_passed_on():
    limits = Limits(per_node=1)
    assert await limits.acquire("a", 1)
    order_served = []

    async def waiter(name):
        assert await limits.acquire("a", 1)
        order_served.append(name)

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter("second"))
    await asyncio.sleep(0)
    assert limits.snapshot() == {"a": (1, 2)}
    limits.release("a")
    await first
    assert order_served == ["first"] and limits.snapshot() == {"a": (1, 1)}
    limits.release("a")
    await second
    limits.release("a")
    assert limits.snapshot() == {}


async def test_a_wait_ends_at_its_timeout_and_leaves_the_line():
    limits = Limits(per_node=2)
    assert await limits.acquire("a", 1) and await limits.acquire("a", 1)
    assert not await limits.acquire("a", 0.05)
    assert limits.snapshot() == {"a": (2, 0)}


async def test_a_cancelled_waiter_gives_back_a_slot_it_was_handed():
    limits = Limits(per_node=1)
    assert await limits.acquire("a", 1)
    waiting = asyncio.create_task(limits.acquire("a", 5))
    await asyncio.sleep(0)
    limits.release("a")  # handed to the waiter...
    waiting.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limits.snapshot() == {}


def test_usage_is_read_from_the_end_of_an_ollama_reply():
    final = (
        b'{"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant",'
        b'"content":""},"done_reason":"stop","done":true,"total_duration":300000000,'
        b'"load_duration":2000000,"prompt_eval_count":26,"prompt_eval_duration":4000,'
        b'"eval_count":50,"eval_duration":250000000}\n'
    )
    usage = read_usage(
        b'{"message":{"content":"x"},"done":false}\n' + final, openai=False
    )
    assert (usage.prompt_tokens, usage.completion_tokens) == (26, 50)
    assert usage.tokens_per_second == pytest.approx(200.0)
    assert usage.done_reason == "stop" and usage.load_seconds == pytest.approx(0.002)


def test_usage_is_read_from_an_openai_reply():
    body = (
        b'{"id":"chatcmpl-1","choices":[{"index":0,"finish_reason":"length"}],'
        b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}\n'
    )
    usage = read_usage(body, openai=True)
    assert (usage.prompt_tokens, usage.completion_tokens) == (12, 7)
    assert usage.done_reason == "length"


def test_strip_takes_out_only_the_usage_the_client_did_not_ask_for():
    strip = Strip()
    content = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    assert strip.chunk(content) == content
    finish = b'data: {"id":"c","choices":[{"index":0,"finish_reason":"stop"}]}'
    last = (
        finish + b"\n\n"
        b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,'
        b'"completion_tokens":2,"total_tokens":5}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert strip.chunk(last) == finish + b"\n\ndata: [DONE]\n\n"
    assert b'"completion_tokens":2' in strip.usage_event
    completion = (
        b'data: {"id":"cmpl-1","object":"text_completion","choices":[{"text":"a",'
        b'"index":0,"finish_reason":null}],"model":"m","system_fingerprint":"fp_ollama",'
        b'"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}\n\n'
    )
    assert strip.chunk(completion) == completion.replace(
        b',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}', b""
    )


def test_the_fleets_list_names_each_model_once_with_its_nodes_newest_first():
    a, b = node("a:1"), node("b:1")
    answers = [
        (a, {"models": [{"name": "old:1b", "modified_at": "2026-01-01T00:00:00Z"}]}),
        (
            b,
            {
                "models": [
                    {"name": "new:1b", "modified_at": "2026-02-01T01:00:00+01:00"},
                    {"name": "old:1b", "modified_at": "2026-01-01T00:00:00Z"},
                ]
            },
        ),
        (node("c:1"), None),  # did not answer in time
    ]
    merged = fanout._merge(answers, newest=lambda m: fanout._when(m["modified_at"]))
    assert [(m["name"], m["nodes"]) for m in merged] == [
        ("new:1b", ["b:1"]),
        ("old:1b", ["a:1", "b:1"]),
    ]


def test_origins_follow_ollamas_defaults_the_setting_and_the_gateways_own(settings):
    settings.SOLLOL_GATEWAY_ORIGINS = ["http://*.lan:*", "https://webui.example"]
    for origin in (
        "http://localhost",
        "https://127.0.0.1:8443",
        "http://0.0.0.0:3000",
        "app://obsidian.md",
        "file://",
        "tauri://localhost",
        "vscode-webview://1a2b",
        "moz-extension://0f1e",
        "http://box.lan:3000",
        "https://WebUI.example",
    ):
        assert origins.allowed(origin, None), origin
    # The gateway's own origin (the dashboard's page under /ollama/).
    assert origins.allowed("http://dash.example:8080", "dash.example:8080")
    for origin in (
        "https://evil.example",
        "http://localhost.evil.example",
        "http://box.lan",  # the setting asked for a port
        "https://webui.example:444",
        "null",
    ):
        assert not origins.allowed(origin, "dash.example:8080"), origin

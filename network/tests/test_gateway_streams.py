"""Streams through the gateway: OpenAI's clients, disconnects, breaks mid-stream."""

from __future__ import annotations

import json
import socket
import time

import ollama
import openai
import pytest
from django.test import override_settings

from activity.models import RequestRecord
from network.tests.gateway_harness import served_gateway, view_of
from network.tests.test_gateway import CHAT, frozen, wait_for_records
from simulator.ollama import running_fleet

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def fleet():
    with running_fleet(2, base="127.0.0.86", port=0, seed=8, clock=frozen) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def _fresh(fleet):
    for node in fleet.nodes:
        node.heal()
        node.set_generation()
        for name in node.disk_models():
            node.delete(name)
        node.load("llama3.2:3b", keep_alive=-1)
        node.pull("nomic-embed-text")
        node.load("nomic-embed-text", keep_alive=-1)
        node.reset_counters()
    yield


def without_ids(value):
    """OpenAI ids are random per reply (chatcmpl-<n>): everything else must match."""
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def test_openai_clients_get_what_the_node_itself_answers(fleet):
    node = fleet.nodes[0]
    with served_gateway([view_of(node)]) as served:
        through = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")
        direct = openai.OpenAI(base_url=f"{node.url}/v1", api_key="unused")
        for ask in (
            lambda c: c.chat.completions.create(model="llama3.2:3b", messages=CHAT),
            lambda c: list(
                c.chat.completions.create(
                    model="llama3.2:3b", messages=CHAT, stream=True
                )
            ),
            lambda c: list(
                c.chat.completions.create(
                    model="llama3.2:3b",
                    messages=CHAT,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ),
            lambda c: c.completions.create(model="llama3.2:3b", prompt="Hello"),
            lambda c: list(
                c.completions.create(model="llama3.2:3b", prompt="Hello", stream=True)
            ),
            lambda c: c.embeddings.create(model="nomic-embed-text", input=["a", "b"]),
            lambda c: c.models.list().data,
            lambda c: c.models.retrieve("llama3.2:3b"),
        ):
            got, expected = ask(through), ask(direct)
            dump = (
                [r.model_dump() for r in got]
                if isinstance(got, list)
                else got.model_dump()
            )
            want = (
                [r.model_dump() for r in expected]
                if isinstance(expected, list)
                else expected.model_dump()
            )
            assert without_ids(dump) == without_ids(want)


def test_a_streamed_openai_request_is_counted_though_the_client_asked_no_usage(fleet):
    node = fleet.nodes[0]
    with served_gateway([view_of(node)]) as served:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")
        chunks = list(
            client.chat.completions.create(
                model="llama3.2:3b",
                messages=CHAT,
                stream=True,
                max_tokens=7,
            )
        )
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk slipped in
    assert chunks[-1].choices[0].finish_reason == "length"
    [record] = wait_for_records(1)
    assert (record.endpoint, record.completion_tokens) == ("v1/chat/completions", 7)
    assert record.prompt_tokens > 0


async def test_the_async_openai_client_streams_through_it(fleet):
    node = fleet.nodes[1]
    with served_gateway([view_of(node)]) as served:
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="unused")
        stream = await client.chat.completions.create(
            model="llama3.2:3b", messages=CHAT, stream=True
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
        assert text.startswith(f"Simulated reply from {node.address}")
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="nope:1b", messages=CHAT)
        assert missing.value.body["message"] == (
            'model "nope:1b" not found, try pulling it first'
        )


def test_a_client_that_drops_a_stream_closes_it_at_the_node_at_once(fleet):
    node = fleet.nodes[0]
    node.set_generation(token_rate=20)  # 100 tokens: 5 s if nobody stops it
    body = json.dumps(
        {"model": "llama3.2:3b", "messages": CHAT, "options": {"num_predict": 100}}
    ).encode()
    with served_gateway([view_of(node)]) as served:
        with socket.create_connection(("127.0.0.1", served.port)) as sock:
            sock.sendall(
                b"POST /api/chat HTTP/1.1\r\nHost: gateway\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while received.count(b"}\n") < 2:  # a couple of tokens
                received += sock.recv(65536)
            dropped = time.monotonic()
        deadline = time.monotonic() + 2
        while not node.dropped and time.monotonic() < deadline:
            time.sleep(0.005)
        assert node.dropped, "the node never saw the client go"
        assert node.dropped[-1] - dropped <= 0.100
        assert node.snapshot()["generating"] == 0
    [record] = wait_for_records(1)
    assert (record.status_code, record.ok) == (499, False)
    assert record.error == "the client closed the connection"


@pytest.mark.parametrize("where", ["generating", "queued"])
def test_a_client_that_drops_a_request_before_its_reply_stops_it_at_once(fleet, where):
    """Not streamed, the reply's first byte is its last: a client that gives up
    while the node generates, or while the request waits for the node's slot,
    must stop that work, not leave the node generating for nobody."""
    node = fleet.nodes[0]
    node.set_generation(token_rate=20)  # 100 tokens: 5 s if nobody stops it
    body = json.dumps(
        {
            "model": "llama3.2:3b",
            "messages": CHAT,
            "stream": False,
            "options": {"num_predict": 100},
        }
    ).encode()
    request = (
        b"POST /api/chat HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with override_settings(SOLLOL_GATEWAY_NODE_CONCURRENCY=1):
        with served_gateway([view_of(node)]) as served:
            held = None
            if where == "queued":  # another request holds the only slot
                held = socket.create_connection(("127.0.0.1", served.port))
                held.sendall(request)
                wait_until(lambda: node.snapshot()["generating"] == 1)
            with socket.create_connection(("127.0.0.1", served.port)) as sock:
                sock.sendall(request)
                if held is None:
                    wait_until(lambda: node.snapshot()["generating"] == 1)
                time.sleep(0.3)
                dropped = time.monotonic()
            if held is None:
                wait_until(lambda: node.dropped)
                assert node.dropped[-1] - dropped <= 0.100
            else:
                # It never reached the node: the slot it waited for stays free.
                held.close()
                wait_until(lambda: len(node.dropped) == 1)
                assert node.snapshot()["generating"] == 0
                time.sleep(0.2)
                assert node.snapshot()["queued"] == 0
            wait_until(lambda: node.snapshot()["generating"] == 0)
            # ... and the node's slot in the gateway is free again.
            node.set_generation()
            assert (
                ollama.Client(host=served.url)
                .chat(model="llama3.2:3b", messages=CHAT)
                .done
            )
    closed = [
        r for r in wait_for_records(2 + (held is not None)) if r.status_code == 499
    ]
    assert len(closed) == 1 + (held is not None)
    assert {r.error for r in closed} == {"the client closed the connection"}


def wait_until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.005)


def test_a_node_that_breaks_mid_stream_ends_it_with_an_error_and_is_not_retried(fleet):
    first, second = fleet.nodes
    first.set_cut(3)  # the connection drops after three chunks of the stream
    with served_gateway([view_of(first), view_of(second)]) as served:
        client = ollama.Client(
            host=served.url, headers={"X-SOLLOL-Node": first.address}
        )
        parts = []
        with pytest.raises(ollama.ResponseError) as broken:
            for part in client.chat(model="llama3.2:3b", messages=CHAT, stream=True):
                parts.append(part)
        assert len(parts) == 3
        assert "closed the connection mid-reply" in broken.value.error
        # OpenAI's stream ends the same way, in its own words.
        first.set_cut(2)
        direct = openai.OpenAI(
            base_url=f"{served.url}/v1",
            api_key="unused",
            default_headers={"X-SOLLOL-Node": first.address},
        )
        with pytest.raises(openai.APIError):
            list(
                direct.chat.completions.create(
                    model="llama3.2:3b", messages=CHAT, stream=True
                )
            )
    assert second.snapshot()["requests_total"] == 0
    records = wait_for_records(2)
    assert [(r.status_code, r.ok) for r in records] == [(502, False), (502, False)]


def test_a_node_that_resets_the_connection_is_left_for_the_next(fleet):
    first, second = fleet.nodes
    first.set_reset(True)
    with served_gateway([view_of(first), view_of(second)]) as served:
        reply = ollama.Client(host=served.url).generate(model="llama3.2:3b", prompt="x")
        assert served.probed_soon() == [first.index]
    assert reply.response.startswith(f"Simulated reply from {second.address}")
    [record] = wait_for_records(1)
    assert record.node == second.address and record.ok
    assert RequestRecord.objects.count() == 1

"""Simulated nodes answer work as Ollama does, to ollama-python and on the wire.

Replies and their shapes, token counts, pacing, slots and the queue, clients that
go away, and the faults a gateway's failover must survive (reset, cut). The
OpenAI-compatible API is in test_openai.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import ollama
import pytest

from simulator.ollama import BUSY_MESSAGE, Fleet, SimulatedNode, running_fleet
from simulator.tests.clients import CHAT, EMBED, HELLO, native, until, wait_until

# ------------------------------------------------------------ replies, shapes


def test_ollama_chat_and_generate_streamed_or_not(node: SimulatedNode) -> None:
    client = native(node)
    whole = client.chat(model=CHAT, messages=HELLO, stream=False)
    parts = list(client.chat(model=CHAT, messages=HELLO, stream=True))
    generated = client.generate(model=CHAT, prompt="Say hello.")

    assert whole.done and whole.done_reason == "stop"
    assert whole.message.role == "assistant"
    assert whole.message.content.startswith("Simulated reply from " + node.address)
    assert whole.eval_count == len(parts) - 1  # a chunk a token, then "done"
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == whole.eval_count
    assert generated.response == whole.message.content
    assert generated.context and generated.done_reason == "stop"
    assert node.processed[CHAT] == 3


def test_chat_answers_keep_gos_field_order_of_the_nodes_version() -> None:
    versions = ("0.12.3", "0.11.4")
    with running_fleet(2, base="127.0.0.71", port=0, versions=versions) as fleet:
        bodies = []
        for node in fleet.nodes:
            node.pull(CHAT)
            raw = httpx.post(
                node.url + "/api/chat",
                json={"model": CHAT, "messages": HELLO, "stream": False},
                trust_env=False,
            ).json()
            bodies.append(list(raw))
    assert bodies[0][:5] == ["model", "created_at", "message", "done", "done_reason"]
    assert bodies[1][:5] == ["model", "created_at", "message", "done_reason", "done"]


def test_created_at_is_utc_with_nanoseconds_in_every_chunk(node: SimulatedNode) -> None:
    node.set_generation(token_rate=5000)  # several tokens due in each wake-up
    lines = [
        json.loads(line)
        for line in httpx.post(
            node.url + "/api/generate",
            json={"model": CHAT, "prompt": "hi", "options": {"num_predict": 20}},
            trust_env=False,
        ).text.splitlines()
    ]
    stamps = [line["created_at"] for line in lines]
    assert all(stamp.endswith("Z") for stamp in stamps)
    assert len(set(stamps)) == len(stamps)  # each chunk stamped when written
    assert stamps == sorted(stamps)


async def test_async_ollama_client_streams_and_embeds(node: SimulatedNode) -> None:
    client = ollama.AsyncClient(host=node.url, trust_env=False, timeout=10)
    parts = [
        part
        async for part in await client.generate(
            model=CHAT, prompt="Tell me more.", stream=True, options={"num_predict": 9}
        )
    ]
    embedded = await client.embed(model=EMBED, input=["one", "two"])
    legacy = await client.embeddings(model=EMBED, prompt="one")
    empty = await client.embeddings(model=EMBED, prompt="")

    assert len(parts) == 10 and parts[-1].done_reason == "length"
    assert parts[-1].eval_count == 9
    assert [len(v) for v in embedded.embeddings] == [384, 384]
    assert embedded.prompt_eval_count == 2
    assert len(legacy.embedding) == 384
    assert legacy.embedding[:3] == pytest.approx(embedded.embeddings[0][:3], abs=1e-6)
    assert list(empty.embedding) == []
    assert EMBED in node.loaded_models()  # an empty prompt loads the model


def test_legacy_embeddings_answer_as_ollama_does(node: SimulatedNode) -> None:
    with httpx.Client(base_url=node.url, trust_env=False) as http:
        missing = http.post("/api/embeddings", json={"model": "nope", "prompt": "x"})
        unnamed = http.post("/api/embeddings", json={"prompt": "x"})
        empty = http.post("/api/embeddings", json={"model": EMBED, "prompt": ""})
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "nope" not found, try pulling it first'}
    assert unnamed.status_code == 400
    assert unnamed.json() == {"error": "model is required"}
    assert empty.content == b'{"embedding":[]}'


# ------------------------------------------------------------- token counts


def test_num_predict_gives_exactly_that_many_tokens(
    node: SimulatedNode,
) -> None:
    client = native(node)
    long = client.chat(model=CHAT, messages=HELLO, options={"num_predict": 40})
    short = client.generate(model=CHAT, prompt="x", options={"num_predict": 2})
    twelve = {"num_predict": 12}
    streamed = list(
        client.chat(model=CHAT, messages=HELLO, options=twelve, stream=True)
    )

    assert (long.eval_count, long.done_reason) == (40, "length")
    assert (short.eval_count, short.done_reason, short.response) == (
        2,
        "length",
        "Simulated reply",
    )
    assert len(streamed) == 13 and streamed[-1].eval_count == 12


def test_prompt_eval_count_follows_the_prompt(node: SimulatedNode) -> None:
    client = native(node)

    def counted(text: str) -> int:
        reply = client.chat(model=CHAT, messages=[{"role": "user", "content": text}])
        return reply.prompt_eval_count

    assert counted("x" * 40) == counted("y" * 40) == 10  # a token per 4 characters
    assert counted("x" * 400) == 100
    assert counted("hi") == 1


# ------------------------------------------------------------------- timing


def test_tokens_are_paced_at_the_token_rate(node: SimulatedNode) -> None:
    node.set_generation(token_rate=100)
    started = time.perf_counter()
    arrivals = []
    parts = native(node).generate(
        model=CHAT, prompt="Count.", stream=True, options={"num_predict": 20}
    )
    for part in parts:  # noqa: B007 (the last one is the "done" answer)
        arrivals.append(time.perf_counter())
    tokens = arrivals[:20]
    gaps = [later - earlier for earlier, later in zip(tokens, tokens[1:], strict=False)]

    assert tokens[-1] - started >= 0.185  # 19 intervals of 10 ms after the first
    assert tokens[-1] - tokens[0] >= 0.12  # the first may be late, not the rest
    assert sum(gap >= 0.005 for gap in gaps) >= 8  # spread out, not one burst
    assert part.eval_count == 20
    assert part.eval_duration == 200_000_000  # 20 tokens at 100/s
    assert part.total_duration >= 190_000_000


def test_first_token_waits_and_an_unloaded_model_loads_first(
    node: SimulatedNode,
) -> None:
    node.unload(CHAT)
    node.set_generation(token_rate=1000, first_token=0.1, load_seconds=0.3)
    client = native(node)

    def first_chunk() -> tuple[float, ollama.ChatResponse]:
        started = time.perf_counter()
        stream = client.chat(model=CHAT, messages=HELLO, stream=True)
        next(stream)
        waited = time.perf_counter() - started
        *_, last = stream
        return waited, last

    cold, cold_done = first_chunk()
    warm, warm_done = first_chunk()

    assert cold >= 0.4 and cold_done.load_duration == 300_000_000
    assert 0.1 <= warm < 0.39 and warm_done.load_duration < 100_000_000
    assert warm_done.prompt_eval_duration == 100_000_000


def test_nothing_is_sent_while_a_request_waits(node: SimulatedNode) -> None:
    node.set_generation(first_token=0.3)
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        body = json.dumps({"model": CHAT, "messages": HELLO}).encode()
        sock.sendall(
            f"POST /api/chat HTTP/1.1\r\nHost: {node.address}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # no status line before the first token
        sock.settimeout(2)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_paced_stream_keeps_pipelined_requests_waiting(node: SimulatedNode) -> None:
    node.set_generation(token_rate=200)
    body = json.dumps({"model": CHAT, "prompt": "x", "options": {"num_predict": 10}})
    request = (
        f"POST /api/generate HTTP/1.1\r\nHost: {node.address}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    last = (
        f"GET /api/version HTTP/1.1\r\nHost: {node.address}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        sock.sendall((request + last).encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    first, _, second = raw.partition(b"0\r\n\r\nHTTP/1.1")
    assert first.count(b'"done":false') == 10 and b'"done":true' in first
    assert second.endswith(b'{"version":"0.12.3"}')


# ---------------------------------------------------------- slots and queue


def test_one_slot_serialises_two_requests(node: SimulatedNode) -> None:
    node.set_generation(token_rate=100)  # 20 tokens: about 0.19 s each
    client = native(node)
    seen: list[tuple[int, int]] = []

    def ask() -> None:
        client.generate(model=CHAT, prompt="x", options={"num_predict": 20})

    started = time.perf_counter()
    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: node.generating + node.queued == 2)
    seen.append((node.generating, node.queued))
    for thread in threads:
        thread.join()
    one_slot = time.perf_counter() - started

    node.set_generation(token_rate=100, num_parallel=2)
    started = time.perf_counter()
    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: node.generating == 2)
    seen.append((node.generating, node.queued))
    for thread in threads:
        thread.join()
    two_slots = time.perf_counter() - started

    assert seen == [(1, 1), (2, 0)]
    assert one_slot >= 0.38
    assert two_slots < one_slot - 0.1
    assert (node.generating, node.queued) == (0, 0)
    assert node.snapshot()["generating"] == 0


async def test_past_max_queue_a_node_answers_503_server_busy() -> None:
    async with Fleet(1, base="127.0.0.72", port=0) as fleet:
        node = fleet[0]
        node.pull(CHAT)
        # The first answer holds its slot for over a second: the third request
        # must arrive while both others are still there, on a loaded machine too.
        node.set_generation(token_rate=20, first_token=1.0, num_parallel=1, max_queue=1)
        client = ollama.AsyncClient(host=node.url, trust_env=False, timeout=10)

        def ask() -> asyncio.Task[ollama.GenerateResponse]:
            return asyncio.ensure_future(
                client.generate(model=CHAT, prompt="x", options={"num_predict": 4})
            )

        running, waiting = ask(), ask()
        await until(lambda: node.generating + node.queued == 2)
        with pytest.raises(ollama.ResponseError) as busy:
            await client.generate(model=CHAT, prompt="x")
        done = await asyncio.gather(running, waiting)

    assert busy.value.status_code == 503
    assert busy.value.error == BUSY_MESSAGE
    assert [answer.eval_count for answer in done] == [4, 4]


def test_queue_full_still_answers_inference_503(node: SimulatedNode) -> None:
    node.set_queue_full()
    with pytest.raises(ollama.ResponseError) as busy:
        native(node).chat(model=CHAT, messages=HELLO)
    assert busy.value.status_code == 503 and busy.value.error == BUSY_MESSAGE
    assert native(node).list().models  # probes still answer


# --------------------------------------------------------- clients going away


def test_a_client_gone_mid_stream_is_seen_at_once(node: SimulatedNode) -> None:
    node.set_generation(token_rate=50)
    stream = native(node).chat(
        model=CHAT, messages=HELLO, stream=True, options={"num_predict": 200}
    )
    next(stream)
    assert node.generating == 1
    closed_at = time.monotonic()
    stream.close()  # the ollama client closes its connection
    wait_until(lambda: node.dropped)

    assert node.dropped[0] - closed_at < 0.1
    assert node.generating == 0
    assert node.processed[CHAT] == 0  # never finished
    assert node.snapshot()["dropped"] == 1


def test_a_client_gone_while_queued_frees_its_place(node: SimulatedNode) -> None:
    node.set_generation(token_rate=50)
    first = native(node).chat(
        model=CHAT, messages=HELLO, stream=True, options={"num_predict": 30}
    )
    next(first)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            node.url + "/api/chat",
            json={"model": CHAT, "messages": HELLO},
            timeout=0.2,
            trust_env=False,
        )
    gone_at = time.monotonic()
    wait_until(lambda: node.dropped)
    assert node.dropped[0] - gone_at < 0.1
    assert (node.generating, node.queued) == (1, 0)
    assert len(list(first)) == 30  # the one generating went on


def test_a_node_that_dies_frees_its_slots_without_counting_drops(
    node: SimulatedNode,
) -> None:
    node.set_generation(token_rate=20)
    stream = native(node).chat(model=CHAT, messages=HELLO, stream=True)
    next(stream)
    node.die()
    with pytest.raises(httpx.RemoteProtocolError):
        list(stream)
    node.revive()
    assert (node.generating, node.queued, node.dropped) == (0, 0, [])
    node.set_generation()
    assert native(node).chat(model=CHAT, messages=HELLO).done


# ------------------------------------------------------------------- faults


def test_reset_reads_a_request_and_answers_with_a_tcp_rst(node: SimulatedNode) -> None:
    node.set_reset()
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        host = f"Host: {node.address}\r\n"
        sock.sendall(f"GET /api/version HTTP/1.1\r\n{host}\r\n".encode())
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)
    with pytest.raises(httpx.ReadError):
        native(node).chat(model=CHAT, messages=HELLO)
    assert node.requests["/api/version"] == 1 and node.requests["/api/chat"] == 1
    node.heal()
    assert native(node).chat(model=CHAT, messages=HELLO).done


def test_cut_aborts_streams_after_some_chunks(node: SimulatedNode) -> None:
    node.set_cut(3)
    client = native(node)
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        for part in client.chat(model=CHAT, messages=HELLO, stream=True):
            received.append(part)
    whole = client.chat(model=CHAT, messages=HELLO, stream=False)

    assert [p.message.content for p in received] == ["Simulated", " reply", " from"]
    assert whole.done  # a non-streamed answer is not cut
    assert node.generating == 0 and node.dropped == []
    node.set_cut(0)  # before the head: no answer at all
    with pytest.raises(httpx.RemoteProtocolError):
        list(client.generate(model=CHAT, prompt="x", stream=True))
    node.heal()
    assert len(list(client.generate(model=CHAT, prompt="x", stream=True))) == 7


def test_the_control_api_sets_generation_reset_and_cut() -> None:
    with running_fleet(1, base="127.0.0.73", port=0, control_port=0) as fleet:
        node = fleet[0]
        with httpx.Client(base_url=fleet.control_url, trust_env=False) as control:
            paced = control.post(
                "/nodes/0/generation",
                json={"token_rate": 25, "first_token": 0.5, "num_parallel": 4},
            ).json()["node"]
            reset = control.post("/nodes/0/reset", json={"on": True}).json()["node"]
            cut = control.post("/nodes/0/cut", json={"after": 2}).json()["node"]
            healed = control.post("/nodes/0/heal").json()["node"]
            wrong = control.post("/nodes/0/generation", json={"token_rate": -1})
            unknown = control.post("/nodes/0/generation", json={"speed": 1})

    assert paced["generation"] == {
        "token_rate": 25.0,
        "first_token": 0.5,
        "load_seconds": 0.0,
        "num_parallel": 4,
        "max_queue": 512,
    }
    assert (paced["generating"], paced["queued"], paced["dropped"]) == (0, 0, 0)
    assert reset["reset"] is True and cut["cut"] == 2
    assert (healed["reset"], healed["cut"]) == (False, None)
    assert healed["generation"]["token_rate"] == 25.0  # not a fault: kept
    assert node.pace.num_parallel == 4
    assert wrong.status_code == 400 and unknown.status_code == 400

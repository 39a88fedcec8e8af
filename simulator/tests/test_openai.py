"""The OpenAI-compatible API of a simulated node, as Ollama's middleware serves it.

The openai SDK (sync and async) and raw bytes: /v1/chat/completions,
/v1/completions, /v1/embeddings and /v1/models answer in OpenAI's shapes, with
Ollama's ids, server-sent events, usage chunks and errors.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from typing import Any

import httpx
import openai
import pytest

from simulator.ollama import BUSY_MESSAGE, Fleet, SimulatedNode
from simulator.tests.clients import (
    CHAT,
    EMBED,
    HELLO,
    async_compatible,
    compatible,
    dechunk,
    native,
    post_raw,
    until,
)

# ------------------------------------------------------------------- answers


def test_models_are_listed_and_retrieved_through_both_apis(node: SimulatedNode) -> None:
    listed = native(node).list()
    client = compatible(node)
    models = client.models.list()
    one = client.models.retrieve(CHAT)
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nope")

    assert [m.id for m in models.data] == [m.model for m in listed.models]
    assert {m.owned_by for m in models.data} == {"library"}
    assert (one.id, one.object, one.owned_by) == (CHAT, "model", "library")
    assert missing.value.body == {
        "message": "model 'nope:latest' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }


def test_an_unknown_model_is_an_openai_not_found_error(node: SimulatedNode) -> None:
    client = compatible(node)
    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(model="nope", messages=HELLO)
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model=CHAT, messages=[])
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    raw = httpx.post(
        node.url + "/v1/chat/completions",
        json={"model": "nope", "messages": HELLO},
        trust_env=False,
    )

    assert chat.value.status_code == 404
    assert chat.value.body == {
        "message": "model 'nope' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    assert empty.value.body["message"] == "[] is too short - 'messages'"
    assert empty.value.body["type"] == "invalid_request_error"
    # A handler's error, rewritten by the middleware's writer: json.Encoder.
    assert raw.headers["content-type"] == "application/json"
    assert raw.content.endswith(b"}\n")


def test_a_malformed_request_is_refused_by_the_middleware(node: SimulatedNode) -> None:
    with httpx.Client(base_url=node.url, trust_env=False) as http:
        wrong = http.post(
            "/v1/chat/completions",
            json={"model": CHAT, "messages": HELLO, "max_tokens": "5"},
        )
        unknown = http.post(
            "/v1/embeddings",
            json={"model": EMBED, "input": "x", "encoding_format": "hex"},
        )
        no_input = http.post("/v1/embeddings", json={"model": EMBED})

    assert wrong.status_code == 400
    # Refused before any handler: gin's JSON (a charset, no newline), not a writer's.
    assert wrong.headers["content-type"] == "application/json; charset=utf-8"
    assert wrong.content.endswith(b"}}")
    assert wrong.json() == {
        "error": {
            "message": "json: cannot unmarshal string into Go struct field "
            "ChatCompletionRequest.max_tokens of type int",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert unknown.json()["error"]["message"] == (
        "Invalid value for 'encoding_format' = hex. Supported values: "
        "['float', 'base64']."
    )
    assert no_input.json()["error"]["message"] == "invalid input"
    assert node.requests["/v1/chat/completions"] == 1 and not node.processed


def test_openai_clients_chat_complete_and_embed(node: SimulatedNode) -> None:
    client = compatible(node)
    chat = client.chat.completions.create(model=CHAT, messages=HELLO)
    completion = client.completions.create(model=CHAT, prompt="Once", max_tokens=3)
    embeddings = client.embeddings.create(model=EMBED, input=["a", "b", "c"])
    encoded = client.embeddings.create(model=EMBED, input="a", encoding_format="base64")
    floats = httpx.post(
        node.url + "/v1/embeddings",
        json={"model": EMBED, "input": "a", "encoding_format": "float"},
        trust_env=False,
    ).json()["data"][0]["embedding"]
    packed = base64.b64decode(encoded.data[0].embedding)

    assert chat.id.startswith("chatcmpl-") and chat.object == "chat.completion"
    assert chat.system_fingerprint == "fp_ollama"
    assert chat.choices[0].finish_reason == "stop"
    assert chat.choices[0].message.content.startswith("Simulated reply")
    assert chat.usage.completion_tokens == 6
    assert abs(chat.created - time.time()) < 5
    assert completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "Simulated reply from"
    assert completion.choices[0].finish_reason == "length"
    assert [e.index for e in embeddings.data] == [0, 1, 2]
    assert len(embeddings.data[0].embedding) == 384
    assert embeddings.usage.prompt_tokens == 3
    assert list(struct.unpack("<384f", packed)) == pytest.approx(floats, abs=1e-7)
    assert floats == pytest.approx(embeddings.data[0].embedding, abs=1e-7)


async def test_async_openai_client_streams_with_usage(node: SimulatedNode) -> None:
    client = async_compatible(node)
    stream = await client.chat.completions.create(
        model=CHAT,
        messages=HELLO,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    await client.close()

    assert [c.choices[0].delta.role for c in chunks[:5]] == ["assistant"] + [None] * 4
    assert all(c.choices[0].delta.content for c in chunks[:5])
    finish = chunks[5]
    assert finish.choices[0].finish_reason == "length"
    assert finish.choices[0].delta.content is None and finish.usage is None
    usage = chunks[6]
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == 5
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + 5
    assert len(chunks) == 7
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1


def test_max_tokens_gives_exactly_that_many_tokens(node: SimulatedNode) -> None:
    client = compatible(node)
    chat = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=7)
    completion = client.completions.create(model=CHAT, prompt="x", max_tokens=30)

    assert chat.usage.completion_tokens == 7
    assert chat.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 30
    assert completion.usage.prompt_tokens == 1
    assert completion.choices[0].finish_reason == "length"


# ------------------------------------------------------------ bytes on the wire


def test_chat_completions_stream_is_server_sent_events(node: SimulatedNode) -> None:
    raw = post_raw(
        node,
        "/v1/chat/completions",
        {"model": CHAT, "messages": HELLO, "stream": True, "max_tokens": 2},
    )
    head, chunks = dechunk(raw)
    body = b"".join(chunks)
    events = body.split(b"\n\n")

    assert b"Content-Type: text/event-stream" in head
    assert b"Transfer-Encoding: chunked" in head
    assert raw.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    assert all(event.startswith(b"data: {") for event in events[:-2])
    first, second, finish = (json.loads(e[len(b"data: ") :]) for e in events[:3])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Simulated"}
    assert second["choices"][0]["delta"] == {"content": " reply"}
    assert first["choices"][0]["finish_reason"] is None
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert list(first) == [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
    ]
    assert len(events) == 5  # two tokens, the finish, [DONE], and the end


def test_completions_stream_carries_zero_usage_then_the_real_one(
    node: SimulatedNode,
) -> None:
    raw = post_raw(
        node,
        "/v1/completions",
        {
            "model": CHAT,
            "prompt": "Once",
            "stream": True,
            "max_tokens": 2,
            "stream_options": {"include_usage": True},
        },
    )
    _, chunks = dechunk(raw)
    events = b"".join(chunks).split(b"\n\n")
    parsed = [json.loads(e[len(b"data: ") :]) for e in events[:-2]]
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    assert events[-2:] == [b"data: [DONE]", b""]
    assert [p["choices"][0]["text"] for p in parsed[:3]] == ["Simulated", " reply", ""]
    assert [p["choices"][0]["finish_reason"] for p in parsed[:3]] == [
        None,
        None,
        "length",
    ]
    assert [p["usage"] for p in parsed[:3]] == [zero] * 3
    assert parsed[3]["choices"] == []
    assert parsed[3]["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
    }
    assert list(parsed[0]) == [
        "id",
        "object",
        "created",
        "choices",
        "model",
        "system_fingerprint",
        "usage",
    ]
    # The done chunk, the usage chunk and [DONE] go out as one HTTP chunk.
    assert chunks[-1].count(b"data: ") == 3


def test_non_streamed_openai_answers_are_json_encoder_output(
    node: SimulatedNode,
) -> None:
    answer = httpx.post(
        node.url + "/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "<b>&</b>"}]},
        trust_env=False,
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content.endswith(b"}\n")
    assert list(answer.json()) == [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    ]


# --------------------------------------------------------- busy, gone, cut


async def test_past_max_queue_the_answer_is_an_openai_503() -> None:
    async with Fleet(1, base="127.0.0.74", port=0) as fleet:
        node = fleet[0]
        node.pull(CHAT)
        node.set_generation(token_rate=20, num_parallel=1, max_queue=1)
        client = async_compatible(node)

        def ask() -> asyncio.Task[Any]:
            return asyncio.ensure_future(
                client.completions.create(model=CHAT, prompt="x", max_tokens=4)
            )

        running, waiting = ask(), ask()
        await until(lambda: node.generating + node.queued == 2)
        with pytest.raises(openai.InternalServerError) as busy:
            await client.chat.completions.create(model=CHAT, messages=HELLO)
        done = await asyncio.gather(running, waiting)
        await client.close()

    assert busy.value.status_code == 503
    assert busy.value.body == {
        "message": BUSY_MESSAGE,
        "type": "api_error",
        "param": None,
        "code": None,
    }
    assert [answer.usage.completion_tokens for answer in done] == [4, 4]


def test_queue_full_answers_v1_inference_in_openais_shape(node: SimulatedNode) -> None:
    node.set_queue_full()
    client = compatible(node)
    with pytest.raises(openai.InternalServerError) as busy:
        client.chat.completions.create(model=CHAT, messages=HELLO)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model=EMBED, input="x")
    assert busy.value.body["message"] == BUSY_MESSAGE
    assert [m.id for m in client.models.list().data]  # listing still answers


async def test_an_async_openai_client_that_gives_up_is_seen(
    node: SimulatedNode,
) -> None:
    node.set_generation(token_rate=50)
    client = async_compatible(node)
    stream = await client.chat.completions.create(
        model=CHAT, messages=HELLO, stream=True, max_tokens=100
    )
    await stream.__anext__()
    closed_at = time.monotonic()
    await stream.close()
    await until(lambda: node.dropped)
    await client.close()
    assert node.dropped[0] - closed_at < 0.1
    assert node.generating == 0


def test_cut_aborts_an_openai_stream(node: SimulatedNode) -> None:
    node.set_cut(2)
    stream = compatible(node).chat.completions.create(
        model=CHAT, messages=HELLO, stream=True
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["Simulated", " reply"]

"""The gateway in front of simulated nodes, used with the clients operators use."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import ollama
import openai
import pytest
import requests
from django.test import Client, override_settings
from django.utils import timezone

from activity.models import GatewayTotals, RequestRecord, Span
from network.gateway.routing import NodeView
from network.models import OllamaNode
from network.tests.gateway_harness import served_gateway, view_of
from simulator.ollama import running_fleet

pytestmark = pytest.mark.django_db(transaction=True)

FROZEN = 1_796_000_000_123_456_789  # the simulated nodes' clock: replies repeat
CHAT = [{"role": "user", "content": "Why is the sky blue?"}]


def frozen() -> int:
    return FROZEN


@pytest.fixture(scope="module")
def fleet():
    with running_fleet(3, base="127.0.0.81", port=0, seed=5, clock=frozen) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def _same_models(fleet):
    """Every node has llama3.2:3b and an embedding model on disk, nothing loaded."""
    for node in fleet.nodes:
        node.heal()
        for name in node.disk_models():
            node.delete(name)
        node.pull("llama3.2:3b")
        node.pull("nomic-embed-text")
        node.reset_counters()
    yield


def records():
    return list(RequestRecord.objects.order_by("id"))


def wait_for_records(count: int, timeout: float = 5.0) -> list[RequestRecord]:
    deadline = time.monotonic() + timeout
    while True:
        found = records()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_ollama_clients_get_what_the_node_itself_answers(fleet):
    node = fleet.nodes[0]
    # Loaded already, so that the first of the two asks does not load them.
    node.load("llama3.2:3b")
    node.load("nomic-embed-text")
    with served_gateway([view_of(node)]) as served:
        through = ollama.Client(host=served.url)
        direct = ollama.Client(host=node.url)
        for ask in (
            lambda c: c.chat(model="llama3.2:3b", messages=CHAT),
            lambda c: list(c.chat(model="llama3.2:3b", messages=CHAT, stream=True)),
            lambda c: c.generate(model="llama3.2:3b", prompt="Hello"),
            lambda c: list(c.generate(model="llama3.2:3b", prompt="Hi", stream=True)),
            lambda c: c.embed(model="nomic-embed-text", input=["a", "b"]),
            lambda c: c.embeddings(model="nomic-embed-text", prompt="a"),  # older API
            lambda c: c.show("llama3.2:3b"),
            lambda c: c.list(),
            lambda c: c.ps(),
        ):
            assert ask(through) == ask(direct)


async def test_the_async_client_streams_through_it(fleet):
    node = fleet.nodes[1]
    with served_gateway([view_of(node)]) as served:
        client = ollama.AsyncClient(host=served.url)
        parts = [
            part.message.content
            async for part in await client.chat(
                model="llama3.2:3b", messages=CHAT, stream=True
            )
        ]
        assert "".join(parts).startswith(f"Simulated reply from {node.address}")
        listed = await client.list()
        assert [m.model for m in listed.models] == node.disk_models()


def test_the_reply_passes_through_byte_for_byte_in_the_same_chunks(fleet):
    node = fleet.nodes[0]
    node.load("llama3.2:3b")
    body = json.dumps({"model": "llama3.2:3b", "messages": CHAT}).encode()
    with served_gateway([view_of(node)]) as served:
        through = raw_exchange(served.port, "/api/chat", body)
        direct = raw_exchange(node.port, "/api/chat", body, host=node.host)
    head, _, chunks = through.partition(b"\r\n\r\n")
    assert chunks == direct.partition(b"\r\n\r\n")[2]
    assert b"content-type: application/x-ndjson" in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()


def raw_exchange(port: int, path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    """POST over a bare socket; return every byte of the reply (chunk framing too)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        reply = b""
        while data := sock.recv(65536):
            reply += data
    return reply


def test_it_prefers_a_node_that_holds_the_model_in_memory(fleet):
    cold, warm = fleet.nodes[0], fleet.nodes[1]
    warm.load("llama3.2:3b")
    with served_gateway([view_of(cold), view_of(warm)]) as served:
        client = ollama.Client(host=served.url)
        for _ in range(3):
            client.generate(model="llama3.2:3b", prompt="x")
    assert warm.snapshot()["processed"] == {"llama3.2:3b": 3}
    assert cold.snapshot()["processed"] == {}


def test_requests_go_to_the_node_with_fewest_in_flight_before_the_fastest(fleet):
    """Two nodes with the model loaded and slots to spare, one measured faster:
    four requests at once are shared two and two, not all sent to the faster."""
    fast, slow = fleet.nodes[:2]
    body = {
        "model": "llama3.2:3b",
        "prompt": "x",
        "stream": False,
        "options": {"num_predict": 40},
    }
    for node in (fast, slow):
        node.load("llama3.2:3b")
        node.set_generation(token_rate=40, num_parallel=4)  # 1 s a reply
    try:
        with override_settings(SOLLOL_GATEWAY_NODE_CONCURRENCY=4):
            views = [view_of(fast, latency_ms=1.0), view_of(slow, latency_ms=5.0)]
            with served_gateway(views) as served:
                replies = asyncio.run_coroutine_threadsafe(
                    _several(f"{served.url}/api/generate", body, 4), served.loop
                ).result(15)
    finally:
        for node in (fast, slow):
            node.set_generation()
    assert [reply.status for reply in replies] == [200] * 4
    assert [node.snapshot()["processed"] for node in (fast, slow)] == [
        {"llama3.2:3b": 2},
        {"llama3.2:3b": 2},
    ]


def test_a_model_no_node_has_is_ollamas_404_and_the_gateway_goes_on(fleet):
    with served_gateway([view_of(n) for n in fleet.nodes]) as served:
        client = ollama.Client(host=served.url)
        with pytest.raises(ollama.ResponseError) as missing:
            client.chat(model="nope:7b", messages=CHAT)
        assert missing.value.status_code == 404
        assert missing.value.error == 'model "nope:7b" not found, try pulling it first'
        assert client.chat(model="llama3.2:3b", messages=CHAT).done


def test_a_known_model_on_no_usable_node_is_503_with_retry_after(fleet):
    views = [view_of(n, status="offline") for n in fleet.nodes]
    with served_gateway(views) as served:
        reply = requests.post(
            f"{served.url}/api/chat", json={"model": "llama3.2:3b", "messages": CHAT}
        )
    assert reply.status_code == 503
    assert reply.headers["Retry-After"]
    assert reply.json() == {"error": "no usable node has model 'llama3.2:3b'"}


def test_a_refused_connection_goes_to_the_next_node_and_is_probed_now(fleet):
    first, second = fleet.nodes[0], fleet.nodes[1]
    first.load("llama3.2:3b")  # the gateway's first choice
    with served_gateway([view_of(first), view_of(second)], fleet=fleet) as served:
        client = ollama.Client(host=served.url)
        first.die()
        try:
            reply = client.chat(model="llama3.2:3b", messages=CHAT)
            assert reply.message.content.startswith(
                f"Simulated reply from {second.address}"
            )
            assert served.probed_soon() == [first.index]
            # The probe found it dead: the next request does not knock first.
            again = client.chat(model="llama3.2:3b", messages=CHAT)
            assert again.message.content.startswith(
                f"Simulated reply from {second.address}"
            )
        finally:
            first.revive()
        assert first.snapshot()["requests"].get("/api/chat", 0) == 0
        assert served.probed_soon() == [first.index]
    [failed_over, _] = wait_for_records(2)
    assert failed_over.node == second.address and failed_over.ok


def test_a_node_that_does_not_answer_before_its_first_byte_is_left(fleet):
    first, second = fleet.nodes[0], fleet.nodes[1]
    first.load("llama3.2:3b")
    first.hang()
    with override_settings(SOLLOL_GATEWAY_FIRST_BYTE_TIMEOUT=0.3):
        with served_gateway([view_of(first), view_of(second)]) as served:
            started = time.monotonic()
            reply = ollama.Client(host=served.url).generate(
                model="llama3.2:3b", prompt="x"
            )
            took = time.monotonic() - started
    assert reply.response.startswith(f"Simulated reply from {second.address}")
    assert 0.3 <= took < 2.0


def test_every_node_failing_is_a_502_that_says_why(fleet):
    nodes = fleet.nodes[:2]
    with served_gateway([view_of(n) for n in nodes]) as served:
        for node in nodes:
            node.die()
        try:
            reply = requests.post(
                f"{served.url}/api/generate",
                json={"model": "llama3.2:3b", "prompt": "x"},
            )
        finally:
            for node in nodes:
                node.revive()
    assert reply.status_code == 502
    assert reply.json()["error"].startswith("no node answered: ")
    assert "refused" in reply.json()["error"]


def test_a_full_node_queues_then_refuses_with_retry_after(fleet):
    node = fleet.nodes[2]
    node.set_delay(1.0)  # the first request holds the node's only slot for 1 s
    with override_settings(
        SOLLOL_GATEWAY_NODE_CONCURRENCY=1, SOLLOL_GATEWAY_QUEUE_TIMEOUT=0.2
    ):
        with served_gateway([view_of(node)]) as served:
            body = {"model": "llama3.2:3b", "prompt": "x", "stream": False}
            url = f"{served.url}/api/generate"
            first = served.run(_post_later(url, body, 0))
            assert first.status == 200
            replies = served.run(_both(url, body))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 503]
    refused = next(r for r in replies if r.status == 503)
    assert refused.headers["Retry-After"] == "1"
    assert "stayed busy for 0.2s" in refused.error


async def _post_later(url, body, delay):
    import aiohttp

    await asyncio.sleep(delay)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body) as reply:
            payload = await reply.json(content_type=None)
            reply.error = payload.get("error", "")
            return reply


async def _several(url, body, count):
    """count requests sent 50 ms apart, all in flight at once."""
    return await asyncio.gather(
        *(_post_later(url, body, i * 0.05) for i in range(count))
    )


async def _both(url, body):
    return await asyncio.gather(_post_later(url, body, 0), _post_later(url, body, 0.05))


def test_management_needs_a_named_node_and_goes_only_there(fleet):
    target = fleet.nodes[1]
    with served_gateway([view_of(n) for n in fleet.nodes]) as served:
        unnamed = requests.post(f"{served.url}/api/pull", json={"model": "qwen3:4b"})
        assert unnamed.status_code == 400
        assert "X-SOLLOL-Node" in unnamed.json()["error"]
        client = ollama.Client(
            host=served.url, headers={"X-SOLLOL-Node": target.address}
        )
        assert client.pull("qwen3:4b").status == "success"
        unknown = requests.post(
            f"{served.url}/api/pull",
            json={"model": "qwen3:4b"},
            headers={"X-SOLLOL-Node": "127.0.0.99:11434"},
        )
        assert unknown.status_code == 400
    assert [n for n in fleet.nodes if "qwen3:4b" in n.disk_models()] == [target]


def test_a_named_node_serves_the_request_even_if_another_holds_the_model(fleet):
    cold, warm = fleet.nodes[0], fleet.nodes[1]
    warm.load("llama3.2:3b")
    with served_gateway([view_of(cold), view_of(warm)]) as served:
        client = ollama.Client(host=served.url, headers={"X-SOLLOL-Node": cold.address})
        reply = client.generate(model="llama3.2:3b", prompt="x")
    assert reply.response.startswith(f"Simulated reply from {cold.address}")


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/chat", b"{not json", 400, "the body is not JSON"),
        ("/api/chat", b"", 400, "missing request body"),
        ("/api/chat", b"[1, 2]", 400, "the body must be a JSON object"),
        ("/api/chat", b'{"messages": []}', 400, "model is required"),
        ("/api/chat", b'{"model": 7}', 400, "model is required"),
        ("/api/chat", b'{"model": "llama3.2:3b", "stream": "yes"}', 400, "stream must"),
        ("/v1/chat/completions", b"{", 400, "the body is not JSON"),
        ("/api/chat", b"[" * 200_000, 400, "the body is not JSON this gateway"),
        ("/api/chat", b'{"model": "a\\u0000b"}', 400, "the model name has"),
        ("/api/chat", b'{"model": "\\ud800"}', 400, "the model name has"),
        ("/api/chat", b'{"model": "%s"}' % (b"m" * 201), 400, "the model name is"),
        ("/v1/models/" + "m" * 201, b"", 400, "the model name is longer"),
    ],
)
def test_bad_input_is_a_clear_400_in_the_apis_shape(fleet, path, body, status, error):
    with served_gateway([view_of(fleet.nodes[0])]) as served:
        reply = requests.request(
            "GET" if path.startswith("/v1/models/") else "POST",
            served.url + path,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert reply.status_code == status
        message = reply.json()["error"]
        if path.startswith("/v1/"):
            assert message["type"] == "invalid_request_error"
            assert message["param"] is None and message["code"] is None
            message = message["message"]
        assert message.startswith(error)
        # ... and it goes on serving.
        assert (
            ollama.Client(host=served.url)
            .generate(model="llama3.2:3b", prompt="x")
            .done
        )


def test_an_oversized_body_is_refused_before_it_is_read(fleet):
    with override_settings(SOLLOL_GATEWAY_MAX_BODY=1000):
        with served_gateway([view_of(fleet.nodes[0])]) as served:
            reply = requests.post(
                f"{served.url}/api/chat",
                json={"model": "llama3.2:3b", "messages": [{"content": "x" * 5000}]},
            )
    assert reply.status_code == 413
    assert reply.json() == {"error": "request body is larger than 1000 bytes"}


def test_unknown_paths_are_ollamas_plain_404(fleet):
    with served_gateway([view_of(fleet.nodes[0])]) as served:
        for method, path in (("GET", "/api/nothing"), ("GET", "/api/chat")):
            reply = requests.request(method, served.url + path)
            assert (reply.status_code, reply.text) == (404, "404 page not found")
        assert requests.get(served.url + "/").text == "Ollama is running"
        assert requests.head(served.url + "/").status_code == 200
        assert requests.get(served.url + "/api/version").json() == {
            "version": fleet.nodes[0].version
        }


def test_with_tokens_a_client_needs_one(fleet):
    with override_settings(SOLLOL_GATEWAY_TOKENS=["s3cret", "other"]):
        with served_gateway([view_of(fleet.nodes[0])]) as served:
            none = requests.post(f"{served.url}/api/generate", json={})
            assert none.status_code == 401
            assert none.headers["WWW-Authenticate"] == "Bearer"
            wrong = ollama.Client(
                host=served.url, headers={"Authorization": "Bearer nope"}
            )
            with pytest.raises(ollama.ResponseError) as refused:
                wrong.generate(model="llama3.2:3b", prompt="x")
            assert refused.value.status_code == 403
            right = ollama.Client(
                host=served.url, headers={"Authorization": "Bearer other"}
            )
            assert right.generate(model="llama3.2:3b", prompt="x").done
    [record] = wait_for_records(1)
    # The application is the token's owner, never the token.
    assert record.app_id.startswith("token:") and "other" not in record.app_id


def test_behind_a_proxy_on_loopback_only_the_proxys_loopback_clients_get_in(
    fleet, settings
):
    """Without a token the gateway answers loopback clients only; through nginx on
    this machine every connection is loopback, so the address the proxy saw (the
    last of X-Forwarded-For) decides, and one a client forged before it does not."""
    settings.SOLLOL_TRUSTED_PROXIES = ["127.0.0.1"]
    with served_gateway([view_of(fleet.nodes[0])]) as served:
        version = f"{served.url}/api/version"
        remote = requests.get(version, headers={"X-Forwarded-For": "198.51.100.7"})
        assert remote.status_code == 403 and "loopback" in remote.json()["error"]
        forged = {"X-Forwarded-For": "127.0.0.1, 198.51.100.7"}
        assert requests.get(version, headers=forged).status_code == 403
        local = {"X-Forwarded-For": "198.51.100.7, 127.0.0.1"}
        assert requests.get(version, headers=local).status_code == 200
        assert requests.get(version).status_code == 200


def test_a_request_a_proxy_not_named_forwarded_is_refused_without_a_token(fleet):
    """With no SOLLOL_TRUSTED_PROXIES, X-Forwarded-For is nobody's word: a loopback
    client is loopback whatever it writes there, but a request that says it was
    forwarded may come from anyone behind a proxy the operator did not name."""
    with served_gateway([view_of(fleet.nodes[0])]) as served:
        version = f"{served.url}/api/version"
        assert requests.get(version).status_code == 200
        forwarded = {"X-Forwarded-For": "127.0.0.1"}
        refused = requests.get(version, headers=forwarded)
        assert refused.status_code == 403
        assert "SOLLOL_TRUSTED_PROXIES" in refused.json()["error"]


def test_each_request_becomes_a_record_with_what_the_node_measured(fleet):
    node = fleet.nodes[0]
    with served_gateway([view_of(node)]) as served:
        client = ollama.Client(host=served.url, headers={"X-SOLLOL-App": "notes-app"})
        client.chat(model="llama3.2:3b", messages=CHAT)
        list(client.generate(model="llama3.2:3b", prompt="Hello", stream=True))
        with pytest.raises(ollama.ResponseError):
            client.chat(model="nope:1b", messages=CHAT)
    chat, generate, missing = wait_for_records(3)
    for record in (chat, generate):
        assert record.source == "gateway"
        assert record.node == node.address and record.model == "llama3.2:3b"
        assert record.app_id == "notes-app"
        assert record.ok and record.status_code == 200
        assert record.prompt_tokens > 0 and record.completion_tokens > 0
        assert record.tokens_per_second > 0
        assert record.ttft_ms is not None and record.queue_ms is not None
    assert (chat.endpoint, generate.endpoint) == ("chat", "generate")
    assert (missing.status_code, missing.ok, missing.node) == (404, False, "")
    assert missing.error == 'model "nope:1b" not found, try pulling it first'
    # A name no node has is said in the error, not kept as a model of its own
    # in what lives on (totals, rollups, Prometheus series).
    assert missing.model == ""
    assert "nope:1b" not in set(GatewayTotals.objects.values_list("model", flat=True))


def test_in_flight_and_queued_requests_show_in_the_api_and_prometheus(fleet, client):
    node = fleet.nodes[2]
    OllamaNode.objects.create(
        url=node.url,
        host=node.host,
        port=node.port,
        source="config",
        status="healthy",
        created_at=timezone.now(),
    )
    node.set_delay(1.0)
    with override_settings(SOLLOL_GATEWAY_NODE_CONCURRENCY=1):
        with served_gateway([view_of(node)]) as served:
            body = {"model": "llama3.2:3b", "prompt": "x", "stream": False}
            pending = asyncio.run_coroutine_threadsafe(
                _both(f"{served.url}/api/generate", body), served.loop
            )
            # Both arrived within 0.05 s; the first is answered after 1 s.
            deadline = time.monotonic() + 0.9
            while True:
                [listed] = client.get("/api/network/nodes").json()["nodes"]
                scraped = client.get("/api/prometheus").content.decode()
                counts = (listed["in_flight"], listed["queued"])
                if counts == (1, 1) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert [r.status for r in pending.result(10)] == [200, 200]
            # The slot is given back as the reply ends (in Redis, a moment later).
            deadline = time.monotonic() + 1
            while True:
                [after] = client.get("/api/network/nodes").json()["nodes"]
                if after["in_flight"] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    assert (listed["in_flight"], listed["queued"]) == (1, 1)
    label = f'{{node="{node.address}"}}'
    assert f"sollol_gateway_in_flight{label} 1\n" in scraped
    assert f"sollol_gateway_queue_depth{label} 1\n" in scraped
    assert (after["in_flight"], after["queued"]) == (0, 0)


@pytest.fixture
def recording_node():
    """A bare HTTP server answering /api/generate as Ollama does, keeping the
    traceparent each request brought."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers.get("traceparent"))
            body = json.dumps(
                {
                    "model": "tiny:1b",
                    "created_at": "2026-12-03T10:00:00.000000001Z",
                    "response": "ok",
                    "done": True,
                    "done_reason": "stop",
                    "prompt_eval_count": 2,
                    "eval_count": 3,
                    "eval_duration": 3_000_000,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.85", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address
    view = NodeView(
        url=f"http://{host}:{port}",
        address=f"{host}:{port}",
        status="healthy",
        usable=True,
        degraded=False,
        disk=frozenset({"tiny:1b"}),
    )
    yield view, seen
    server.shutdown()
    server.server_close()


def test_a_request_is_a_span_in_the_clients_trace_and_the_nodes_parent(
    recording_node,
):
    view, seen = recording_node
    trace_id, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with served_gateway([view]) as served:
        reply = requests.post(
            f"{served.url}/api/generate",
            json={"model": "tiny:1b", "prompt": "x", "stream": False},
            headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
        )
        assert reply.json()["response"] == "ok"
        requests.post(
            f"{served.url}/api/generate",
            json={"model": "tiny:1b", "prompt": "x", "stream": False},
        )
    spans = wait_for_spans(2)
    continued = next(s for s in spans if s.trace_id == trace_id)
    began = next(s for s in spans if s.trace_id != trace_id)
    assert continued.parent_span_id == client_span
    assert began.parent_span_id == ""
    assert seen == [
        f"00-{trace_id}-{continued.span_id}-01",
        f"00-{began.trace_id}-{began.span_id}-01",
    ]
    assert (continued.name, continued.service, continued.kind) == (
        "generate tiny:1b",
        "sollol-gateway",
        "server",
    )
    assert continued.attributes["gen_ai.usage.output_tokens"] == 3
    assert continued.attributes["server.address"] == view.address
    assert continued.status == "ok"
    [listed] = [
        t
        for t in Client().get("/api/traces").json()["traces"]
        if t["trace_id"] == trace_id
    ]
    assert (listed["span_count"], listed["services"]) == (1, ["sollol-gateway"])


def wait_for_spans(count: int, timeout: float = 5.0) -> list[Span]:
    deadline = time.monotonic() + timeout
    while True:
        found = list(Span.objects.order_by("start"))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_gateway_requests_are_counted_as_the_gateways_not_as_reported(fleet):
    node = fleet.nodes[0]
    with served_gateway([view_of(node)]) as served:
        ollama.Client(host=served.url).generate(model="llama3.2:3b", prompt="x")
    wait_for_records(1)
    scraped = Client().get("/api/prometheus").content.decode()
    labels = f'node="{node.address}",model="llama3.2:3b"'
    assert f'sollol_gateway_requests_total{{{labels},status="200"}} 1\n' in scraped
    assert "sollol_router_requests_total{" not in scraped


def test_text_a_lone_surrogate_in_it_is_forwarded_not_a_500(fleet):
    """A streamed /v1 request is sent on with usage asked for: re-encoded, its
    escapes must survive (JSON allows "\\ud800"; UTF-8 has no such character)."""
    with served_gateway([view_of(fleet.nodes[0])]) as served:
        reply = requests.post(
            f"{served.url}/v1/chat/completions",
            data=b'{"model": "llama3.2:3b", "stream": true,'
            b' "messages": [{"role": "user", "content": "x\\ud800"}]}',
            headers={"Content-Type": "application/json"},
        )
    assert reply.status_code == 200, reply.text
    assert reply.text.rstrip().endswith("data: [DONE]")


def test_questions_and_management_do_not_wait_for_a_generating_nodes_slot(fleet):
    node = fleet.nodes[1]
    node.set_generation(token_rate=20)  # 100 tokens: 5 s in the only slot
    body = {
        "model": "llama3.2:3b",
        "prompt": "x",
        "stream": False,
        "options": {"num_predict": 100},
    }
    try:
        with override_settings(
            SOLLOL_GATEWAY_NODE_CONCURRENCY=1, SOLLOL_GATEWAY_QUEUE_TIMEOUT=0.5
        ):
            with served_gateway([view_of(node)]) as served:
                long = asyncio.run_coroutine_threadsafe(
                    _post_later(f"{served.url}/api/generate", body, 0), served.loop
                )
                deadline = time.monotonic() + 2
                while not node.snapshot()["generating"]:
                    assert time.monotonic() < deadline, "the generation never began"
                    time.sleep(0.01)
                started = time.monotonic()
                shown = requests.post(
                    f"{served.url}/api/show", json={"model": "llama3.2:3b"}, timeout=5
                )
                listed = requests.get(f"{served.url}/v1/models/llama3.2:3b", timeout=5)
                pulled = requests.post(
                    f"{served.url}/api/pull",
                    json={"model": "qwen3:4b", "stream": False},
                    headers={"X-SOLLOL-Node": node.address},
                    timeout=5,
                )
                took = time.monotonic() - started
                # Inference still waits its turn, and is refused in time.
                queued = requests.post(
                    f"{served.url}/api/generate", json=body, timeout=5
                )
                long.cancel()
    finally:
        node.set_generation()
    assert [shown.status_code, listed.status_code, pulled.status_code] == [200] * 3
    assert took < 3.0, took  # not behind the generation's 5 s
    assert queued.status_code == 503


def test_tokens_a_second_of_openai_replies_are_measured_only_when_streamed(fleet):
    """The OpenAI-compatible API says nothing of durations: a streamed reply's
    speed is measured from its first token to its last; one in a single piece
    has none to measure (its first byte is its last)."""
    node = fleet.nodes[0]
    node.set_generation(token_rate=50)
    try:
        with served_gateway([view_of(node)]) as served:
            client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")
            ask = {"model": "llama3.2:3b", "messages": CHAT, "max_tokens": 20}
            client.chat.completions.create(**ask)
            wait_for_records(1)
            list(client.chat.completions.create(**ask, stream=True))
            whole, streamed = wait_for_records(2)
    finally:
        node.set_generation()
    assert whole.completion_tokens == streamed.completion_tokens == 20
    assert whole.tokens_per_second is None
    # 50 a second at the node; what a busy machine's timing makes of it, not
    # a reply in one piece's hundred thousand.
    assert 25 <= streamed.tokens_per_second <= 150, streamed.tokens_per_second


def test_web_pages_use_it_as_ollama_lets_them_and_others_are_refused(fleet):
    """Ollama's origin policy: the machine's own pages (any port), desktop apps
    and browser extensions get CORS answers; any other web page the user opens
    must not make their browser send work to the fleet."""
    node = fleet.nodes[0]
    chat = {"model": "llama3.2:3b", "messages": CHAT, "stream": False}
    with override_settings(SOLLOL_GATEWAY_ORIGINS=["https://webui.lan"]):
        with served_gateway([view_of(node)]) as served:
            for origin in (
                "http://localhost:3000",
                "chrome-extension://abcdefghijklmnop",
                "https://webui.lan",
            ):
                ask = requests.options(
                    f"{served.url}/api/chat",
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "content-type",
                    },
                )
                assert ask.status_code == 204, origin
                assert ask.headers["Access-Control-Allow-Origin"] == origin
                assert "POST" in ask.headers["Access-Control-Allow-Methods"]
                assert "Content-Type" in ask.headers["Access-Control-Allow-Headers"]
                reply = requests.post(
                    f"{served.url}/api/chat", json=chat, headers={"Origin": origin}
                )
                assert reply.status_code == 200, reply.text
                assert reply.headers["Access-Control-Allow-Origin"] == origin
                assert reply.headers["Vary"] == "Origin"

            def asked() -> int:
                return sum(
                    node.requests[p] for p in ("/api/chat", "/v1/chat/completions")
                )

            before = asked()
            for path, shape in (("/api/chat", str), ("/v1/chat/completions", dict)):
                refused = requests.post(
                    served.url + path,
                    json=chat,
                    headers={"Origin": "https://evil.example"},
                )
                assert refused.status_code == 403
                assert "Access-Control-Allow-Origin" not in refused.headers
                error = refused.json()["error"]
                assert isinstance(error, shape)
                said = error if shape is str else error["message"]
                assert "origin https://evil.example may not use this gateway" in said
            assert asked() == before  # nothing reached the node
            # Clients that are not browsers send no Origin, and are served as ever.
            assert requests.post(f"{served.url}/api/chat", json=chat).status_code == 200

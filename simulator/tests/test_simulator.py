"""The Ollama node simulator answers like Ollama and fails on demand."""

from __future__ import annotations

import asyncio
import io
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from django.core.management import call_command

from simulator.ollama import (
    BUSY_MESSAGE,
    FOREVER_NS,
    Fleet,
    SimulatedNode,
    go_time,
    keep_alive_ns,
    running_fleet,
)

NS = 1_000_000_000
TAGS_FIELDS = ["name", "model", "modified_at", "size", "digest", "details"]
PS_FIELDS = [
    "name",
    "model",
    "size",
    "digest",
    "details",
    "expires_at",
    "size_vram",
    "context_length",
]
DETAIL_FIELDS = [
    "parent_model",
    "format",
    "family",
    "families",
    "parameter_size",
    "quantization_level",
]
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Go's time.Time in JSON: RFC 3339, up to 9 fractional digits, Z or ±hh:mm.
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


class FakeClock:
    """A clock tests move by hand, in Unix nanoseconds."""

    def __init__(self) -> None:
        self.now = 1_764_150_000_123_456_789

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * NS)


def client(**kwargs: object) -> httpx.AsyncClient:
    # trust_env=False: an HTTP_PROXY in the environment must not see loopback.
    return httpx.AsyncClient(trust_env=False, timeout=5, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def start_node() -> AsyncIterator[Callable[..., object]]:
    """Start SimulatedNodes on free ports; stop them after the test."""
    nodes: list[SimulatedNode] = []

    async def start(**kwargs: object) -> SimulatedNode:
        kwargs.setdefault("port", 0)
        host = str(kwargs.pop("host", "127.0.0.2"))
        node = SimulatedNode(host, **kwargs)  # type: ignore[arg-type]
        await node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        await node.stop()


def parse_go_time(text: str) -> datetime:
    assert GO_TIME.match(text), text
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None
    return parsed


async def test_it_answers_root_like_ollama(start_node) -> None:
    node = await start_node()
    async with client() as http:
        get = await http.get(node.url + "/")
        head = await http.head(node.url + "/")
    assert get.status_code == 200
    assert get.text == "Ollama is running"
    assert get.headers["content-type"] == "text/plain; charset=utf-8"
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "17"


async def test_it_reports_its_version_as_compact_json(start_node) -> None:
    node = await start_node(version="0.12.3")
    async with client() as http:
        response = await http.get(node.url + "/api/version")
    assert response.status_code == 200
    assert response.content == b'{"version":"0.12.3"}'
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert "date" in response.headers


async def test_it_lists_models_on_disk_with_ollamas_fields(start_node) -> None:
    node = await start_node(
        models=["llama3.2:3b", "qwen2.5:7b", "nomic-embed-text"],
        utc_offset_minutes=-420,
    )
    async with client() as http:
        body = (await http.get(node.url + "/api/tags")).json()
    models = body["models"]
    assert list(body) == ["models"]
    assert {m["name"] for m in models} == {
        "llama3.2:3b",
        "qwen2.5:7b",
        "nomic-embed-text:latest",
    }
    for model in models:
        assert list(model) == TAGS_FIELDS
        assert model["model"] == model["name"]
        assert isinstance(model["size"], int) and model["size"] > 10**8
        assert HEX64.match(model["digest"])
        assert parse_go_time(model["modified_at"]).utcoffset().total_seconds() == (
            -7 * 3600
        )
        assert list(model["details"]) == DETAIL_FIELDS
        assert model["details"]["format"] == "gguf"
        assert model["details"]["parent_model"] == ""
        assert isinstance(model["details"]["families"], list)
        assert re.match(r"^\d+(\.\d+)?[MB]$", model["details"]["parameter_size"])
        assert re.match(r"^(Q\d\w*|F16)$", model["details"]["quantization_level"])
    modified = [parse_go_time(m["modified_at"]) for m in models]
    assert modified == sorted(modified, reverse=True)  # newest first, like Ollama


async def test_digests_are_stable_per_model_name(start_node) -> None:
    first = await start_node(host="127.0.0.2", models=["mistral:7b"])
    second = await start_node(host="127.0.0.3", models=["mistral:7b", "phi3:3.8b"])
    async with client() as http:
        one = (await http.get(first.url + "/api/tags")).json()["models"]
        two = (await http.get(second.url + "/api/tags")).json()["models"]
    digests = {m["name"]: m["digest"] for m in two}
    assert one[0]["digest"] == digests["mistral:7b"] != digests["phi3:3.8b"]


async def test_it_lists_loaded_models_like_ollama_ps(start_node) -> None:
    node = await start_node(vram_total=8 * 1024**3)
    node.load("llama3.2:3b")
    node.load("nomic-embed-text", keep_alive="10m")
    before = datetime.now(UTC)
    async with client() as http:
        body = (await http.get(node.url + "/api/ps")).json()
    models = body["models"]
    assert [m["name"] for m in models] == ["nomic-embed-text:latest", "llama3.2:3b"]
    for model in models:
        assert list(model) == PS_FIELDS
        assert list(model["details"]) == DETAIL_FIELDS
        assert HEX64.match(model["digest"])
        assert 0 <= model["size_vram"] <= model["size"]
        assert isinstance(model["context_length"], int)
    remaining = (parse_go_time(models[1]["expires_at"]) - before).total_seconds()
    assert 295 < remaining <= 301  # keep_alive defaults to 5m


async def test_size_vram_is_what_fits_on_the_gpu(start_node) -> None:
    cpu_only = await start_node(vram_total=0)
    small_gpu = await start_node(vram_total=3 * 1024**3)
    assert cpu_only.load("llama3.1:8b")["size_vram"] == 0
    partly = small_gpu.load("llama3.1:8b")
    assert 0 < partly["size_vram"] == 3 * 1024**3 < partly["size"]
    assert small_gpu.load("qwen2.5:7b", size_vram=123)["size_vram"] == 123
    with pytest.raises(ValueError):
        small_gpu.load("qwen2.5:7b", size_vram=10**15)


async def test_nodes_before_0_10_leave_out_context_length(start_node) -> None:
    node = await start_node(version="0.9.6")
    node.load("llama3.2:3b")
    async with client() as http:
        model = (await http.get(node.url + "/api/ps")).json()["models"][0]
    assert list(model) == PS_FIELDS[:-1]


async def test_load_unload_and_process_show_in_ps(start_node) -> None:
    clock = FakeClock()
    node = await start_node(clock=clock)
    async with client() as http:
        assert (await http.get(node.url + "/api/ps")).json() == {"models": []}
        node.load("llama3.2:3b", keep_alive=60)
        loaded = (await http.get(node.url + "/api/ps")).json()["models"]
        assert [m["name"] for m in loaded] == ["llama3.2:3b"]
        first_expiry = parse_go_time(loaded[0]["expires_at"])

        clock.advance(30)
        node.process("llama3.2:3b")  # a request finished: keep-alive restarts
        after = (await http.get(node.url + "/api/ps")).json()["models"][0]
        assert (parse_go_time(after["expires_at"]) - first_expiry).total_seconds() == 30

        node.unload("llama3.2:3b")
        assert (await http.get(node.url + "/api/ps")).json() == {"models": []}
    assert node.processed["llama3.2:3b"] == 1


async def test_a_model_leaves_ps_when_its_keep_alive_runs_out(start_node) -> None:
    clock = FakeClock()
    node = await start_node(clock=clock)
    node.load("qwen2.5:7b", keep_alive="2m")
    async with client() as http:
        clock.advance(119)
        assert len((await http.get(node.url + "/api/ps")).json()["models"]) == 1
        clock.advance(2)
        assert (await http.get(node.url + "/api/ps")).json() == {"models": []}


async def test_a_negative_keep_alive_keeps_a_model_forever(start_node) -> None:
    node = await start_node()
    node.load("mistral:7b", keep_alive=-1)
    async with client() as http:
        model = (await http.get(node.url + "/api/ps")).json()["models"][0]
    assert parse_go_time(model["expires_at"]).year > 2300  # now + MaxInt64 ns


async def test_generate_loads_the_model_and_finishes_a_request(start_node) -> None:
    node = await start_node(models=["llama3.2:3b"])
    async with client() as http:
        reply = await http.post(
            node.url + "/api/generate",
            json={"model": "llama3.2:3b", "prompt": "hi", "stream": False},
        )
        missing = await http.post(
            node.url + "/api/generate", json={"model": "gemma2:9b", "prompt": "hi"}
        )
        ps = (await http.get(node.url + "/api/ps")).json()["models"]
    assert reply.status_code == 200
    assert reply.json()["done"] is True
    assert list(reply.json())[:5] == [
        "model",
        "created_at",
        "response",
        "done",
        "done_reason",
    ]
    assert missing.status_code == 404
    assert missing.json() == {"error": "model 'gemma2:9b' not found"}
    assert [m["name"] for m in ps] == ["llama3.2:3b"]
    assert node.processed["llama3.2:3b"] == 1


async def test_unknown_paths_and_wrong_methods_answer_like_gin(start_node) -> None:
    node = await start_node()
    async with client() as http:
        missing = await http.get(node.url + "/api/nothing")
        post_ps = await http.post(node.url + "/api/ps")
        post_tags = await http.post(node.url + "/api/tags")
        get_generate = await http.get(node.url + "/api/generate")
        head_ps = await http.head(node.url + "/api/ps")
    assert missing.status_code == 404
    assert missing.text == "404 page not found"
    assert missing.headers["content-type"] == "text/plain"
    assert post_ps.status_code == 405
    assert post_ps.text == "405 method not allowed"
    assert post_ps.headers["allow"] == "GET"
    assert post_tags.headers["allow"] == "HEAD, GET"
    assert get_generate.headers["allow"] == "POST"
    assert head_ps.status_code == 405


async def test_it_refuses_a_foreign_host_name_like_ollama(start_node) -> None:
    node = await start_node()
    async with client() as http:
        foreign = await http.get(
            node.url + "/api/version", headers={"Host": "evil.example.com"}
        )
        local = await http.get(
            node.url + "/api/version", headers={"Host": "localhost:11434"}
        )
    assert foreign.status_code == 403
    assert local.status_code == 200


async def test_a_slow_node_answers_late(start_node) -> None:
    node = await start_node()
    node.set_delay(1.0)
    async with client() as http:
        started = time.perf_counter()
        response = await http.get(node.url + "/api/version")
        elapsed = time.perf_counter() - started
        node.set_delay(0)
        started = time.perf_counter()
        await http.get(node.url + "/api/version")
        fast = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed >= 1.0
    assert fast < 0.8


async def test_an_erroring_node_answers_every_api_path_with_503(start_node) -> None:
    node = await start_node()
    node.set_error(503)
    async with client() as http:
        answers = [
            await http.get(node.url + path)
            for path in ("/api/version", "/api/ps", "/api/tags")
        ]
        root = await http.get(node.url + "/")
        node.set_error(None)
        healed = await http.get(node.url + "/api/version")
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json() == {"error": BUSY_MESSAGE}
    assert root.status_code == 200  # "Ollama is running" unless root=True
    assert healed.status_code == 200


async def test_a_hung_node_accepts_but_never_answers(start_node) -> None:
    node = await start_node()
    node.hang()
    async with httpx.AsyncClient(trust_env=False, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(node.url + "/api/version")
    assert node.requests["/api/version"] == 1  # it arrived, it was read
    node.hang(False)
    async with client() as http:
        assert (await http.get(node.url + "/api/version")).status_code == 200


async def test_a_dead_node_refuses_and_a_revived_one_answers(start_node) -> None:
    node = await start_node()
    async with client() as http:
        assert (await http.get(node.url + "/api/version")).status_code == 200
        node.die()
        with pytest.raises(httpx.ConnectError):
            await http.get(node.url + "/api/version")
        node.revive()
        assert (await http.get(node.url + "/api/version")).status_code == 200
    node.die()
    node.revive()  # in one breath, without yielding to the loop
    async with client() as http:
        assert (await http.get(node.url + "/")).status_code == 200


async def test_dying_drops_connections_with_requests_in_flight(start_node) -> None:
    node = await start_node()
    node.set_delay(5)
    async with client() as http:
        request = asyncio.ensure_future(http.get(node.url + "/api/ps"))
        while node.requests["/api/ps"] == 0:
            await asyncio.sleep(0.01)
        node.die()
        with pytest.raises(httpx.RemoteProtocolError):
            await request
    assert node.open_connections == 0


async def test_it_keeps_a_connection_alive_across_requests(start_node) -> None:
    node = await start_node()
    async with client() as http:
        for path in ("/", "/api/version", "/api/ps", "/api/tags", "/api/version"):
            assert (await http.get(node.url + path)).status_code == 200
    assert node.connections_accepted == 1
    assert node.requests == {"/": 1, "/api/version": 2, "/api/ps": 1, "/api/tags": 1}


async def test_it_answers_pipelined_requests_in_order_then_closes(start_node) -> None:
    node = await start_node()
    reader, writer = await asyncio.open_connection(node.host, node.port)
    host = f"Host: {node.address}\r\n"
    writer.write(
        (f"GET /api/version HTTP/1.1\r\n{host}\r\n" * 2).encode()
        + f"GET / HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)  # EOF: the server closed
    writer.close()
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert raw.endswith(b"Ollama is running")
    assert b"Connection: close" in raw.split(b"Ollama is running")[0]


async def test_a_fleet_takes_consecutive_loopback_addresses() -> None:
    async with Fleet(3, base="127.0.0.20", port=0) as by_host:
        hosts = [node.host for node in by_host.nodes]
        assert hosts == ["127.0.0.20", "127.0.0.21", "127.0.0.22"]
        assert by_host.urls[0] == f"http://127.0.0.20:{by_host[0].port}"
    async with Fleet(3, base="127.0.0.30", port=0, layout="ports") as by_port:
        assert {node.host for node in by_port.nodes} == {"127.0.0.30"}
        assert len({node.port for node in by_port.nodes}) == 3
    with pytest.raises(ValueError):
        Fleet(1, base="192.0.2.1")  # nothing here may leave loopback


async def test_a_fleet_has_varied_deterministic_models() -> None:
    fleet = Fleet(40, port=0, seed=7)
    again = Fleet(40, port=0, seed=7)
    disk = [tuple(node.disk_models()) for node in fleet.nodes]
    loaded = [node.loaded_models() for node in fleet.nodes]
    assert disk == [tuple(node.disk_models()) for node in again.nodes]
    assert len(set(disk)) > 20
    assert 5 < sum(bool(names) for names in loaded) < 35  # some busy, some idle
    for node in fleet.nodes:
        for model in node._ps_entries():
            assert 0 <= model["size_vram"] <= model["size"]


async def test_a_thousand_nodes_start_and_answer() -> None:
    started = time.perf_counter()
    async with Fleet(1000, base="127.0.10.2", port=0) as fleet:
        sample = fleet.nodes[::20]
        async with client(
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=0)
        ) as http:
            answers = await asyncio.gather(
                *(http.get(node.url + "/api/version") for node in sample)
            )
    assert len(sample) == 50
    assert all(answer.json() == {"version": "0.12.3"} for answer in answers)
    assert time.perf_counter() - started < 10


async def test_the_control_surface_drives_nodes() -> None:
    async with Fleet(3, base="127.0.0.40", port=0, control_port=0) as fleet:
        assert fleet.control_url is not None
        node = fleet[1]
        async with client(base_url=fleet.control_url) as control, client() as http:
            listing = (await control.get("/nodes")).json()["nodes"]
            assert [n["url"] for n in listing] == fleet.urls

            assert (await control.post("/nodes/1/die")).json()["node"]["alive"] is False
            with pytest.raises(httpx.ConnectError):
                await http.get(node.url + "/api/version")
            await control.post("/nodes/1/revive")
            assert (await http.get(node.url + "/api/version")).status_code == 200

            await control.post("/nodes/1/error", json={"status": 503})
            assert (await http.get(node.url + "/api/ps")).status_code == 503
            await control.post("/nodes/1/error", json={"status": None})

            await control.post("/nodes/1/slow", json={"seconds": 0.2})
            started = time.perf_counter()
            await http.get(node.url + "/api/version")
            assert time.perf_counter() - started >= 0.2
            await control.post("/nodes/1/heal")

            loaded = await control.post("/nodes/1/load", json={"model": "gemma3:4b"})
            assert loaded.json()["result"]["name"] == "gemma3:4b"
            names = [
                m["name"]
                for m in (await http.get(node.url + "/api/ps")).json()["models"]
            ]
            assert "gemma3:4b" in names
            await control.post("/nodes/1/process", json={"model": "gemma3:4b"})
            assert node.processed["gemma3:4b"] == 1
            await control.post("/nodes/1/unload", json={"model": "gemma3:4b"})
            assert "gemma3:4b" not in node.loaded_models()

            await control.post("/nodes/all/hang")
            assert all(n.hanging for n in fleet.nodes)
            await control.post("/nodes/all/heal")

            assert (await control.post("/nodes/9/die")).status_code == 404
            assert (await control.post("/nodes/1/load")).status_code == 400
            assert (await control.post("/nodes/1/explode")).status_code == 400
            assert (await control.get("/nodes/1/die")).status_code == 405


def test_running_fleet_serves_synchronous_code() -> None:
    with running_fleet(2, base="127.0.0.50", port=0, control_port=0) as fleet:
        node = fleet[0]
        with httpx.Client(trust_env=False, timeout=5) as http:
            assert http.get(node.url + "/api/version").status_code == 200
            node.die()  # from this thread: run on the fleet's loop
            with pytest.raises(httpx.ConnectError):
                http.get(node.url + "/api/version")
            node.revive()
            node.load("qwen2.5-coder:7b")
            names = [m["name"] for m in http.get(node.url + "/api/ps").json()["models"]]
            assert "qwen2.5-coder:7b" in names
            assert http.get(fleet.control_url + "/health").json()["alive"] == 2
        assert node._loop_thread != threading.get_ident()


def test_go_time_is_rfc3339_with_trimmed_nanoseconds() -> None:
    assert go_time(1_700_000_000 * NS) == "2023-11-14T22:13:20Z"
    assert go_time(1_700_000_000 * NS + 123_400_000, -420) == (
        "2023-11-14T15:13:20.1234-07:00"
    )
    assert go_time(1_700_000_000 * NS + 5, 330) == "2023-11-15T03:43:20.000000005+05:30"


def test_keep_alive_reads_numbers_and_go_durations() -> None:
    assert keep_alive_ns(None) == 300 * NS
    assert keep_alive_ns(0) == 0
    assert keep_alive_ns("5m") == 300 * NS
    assert keep_alive_ns("1h30m") == 5400 * NS
    assert keep_alive_ns("1.5s") == 1_500_000_000
    assert keep_alive_ns(-1) == keep_alive_ns("-1m") == FOREVER_NS
    with pytest.raises(ValueError):
        keep_alive_ns("soon")


def test_simulate_fleet_command_prints_urls_and_stops() -> None:
    out = io.StringIO()
    call_command(
        "simulate_fleet",
        nodes=2,
        base="127.0.0.60",
        port=0,
        control_port=0,
        duration=0.3,
        stdout=out,
    )
    text = out.getvalue()
    assert re.search(r"http://127\.0\.0\.60:\d+", text)
    assert re.search(r"http://127\.0\.0\.61:\d+", text)
    assert "Control: http://127.0.0.1:" in text
    assert text.rstrip().endswith("Stopped.")


def test_simulate_fleet_command_serves_nodes_and_rpc_backends() -> None:
    out = io.StringIO()
    options = {
        "nodes": 2,
        "rpc": 2,
        "base": "127.0.0.64",
        "port": 0,
        "rpc_port": 0,
        "control_port": 0,
        "loop": "asyncio",
        "duration": 1.5,
        "token_rate": 40.0,
        "num_parallel": 2,
        "stdout": out,
    }
    runner = threading.Thread(
        target=call_command, args=("simulate_fleet",), kwargs=options
    )
    runner.start()
    deadline = time.monotonic() + 1.2
    while "Ctrl-C to stop." not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    text = out.getvalue()
    try:
        node_url = re.search(r"http://127\.0\.0\.64:\d+", text)[0]
        control_url = re.search(r"Control: (\S+)", text)[1]
        with httpx.Client(trust_env=False, timeout=2) as http:
            assert http.get(node_url + "/api/version").json() == {"version": "0.12.3"}
            rpc = http.get(control_url + "/rpc").json()["rpc"]
            assert [server["address"] for server in rpc] == re.findall(
                r"^  (127\.0\.0\.6[45]:\d+)$", text, re.MULTILINE
            )
            assert http.post(control_url + "/rpc/0/die").json()["alive"] is False
            generation = http.get(control_url + "/nodes/1").json()["generation"]
            assert (generation["token_rate"], generation["num_parallel"]) == (40.0, 2)
    finally:
        runner.join(timeout=10)
    assert out.getvalue().rstrip().endswith("Stopped.")

"""The real llama.cpp llama-server, with a tiny model made here, in the fleet.

scripts/build_llama_cpp.sh llama-server builds it once into the cache (beside
ggml-rpc-server); SOLLOL_LLAMA_SERVER points at another build. The model is
tests/tinymodel.py's: random weights, real tokens, loaded at once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect

from conftest import require
from network.probes import probe_node
from tests.liveserver import free_port, wait_for
from tests.test_network_live import FAST_PROBING, events_until
from tests.test_rpc_real import BINARY as RPC_BINARY
from tests.test_rpc_real import RealServer
from tests.tinymodel import write_tiny_llama

pytestmark = pytest.mark.live

HOST = "127.0.0.1"
CACHE = Path(os.environ.get("SOLLOL_RPC_SERVER_CACHE", Path.home() / ".cache/sollol"))
BINARY = Path(os.environ.get("SOLLOL_LLAMA_SERVER", CACHE / "llama-server"))
MODEL = "tiny-llama"
SLOTS, CONTEXT_PER_SLOT = 2, 4096


class RealLlamaServer:
    """One llama-server process on loopback with the tiny model, stopped by its PID."""

    def __init__(self, root: Path, *, rpc: str = "") -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = root / "llama-server.log"
        model = write_tiny_llama(root / "tiny.gguf")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(BINARY), "--host", HOST, "--port", str(self.port),
                    "-m", str(model), "--alias", MODEL,
                    "-c", str(SLOTS * CONTEXT_PER_SLOT), "-np", str(SLOTS),
                    "-t", "1", "--metrics", "--slots",
                    *(["--rpc", rpc, "-ngl", "99"] if rpc else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"llama-server did not start:\n{self.log()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _require_binary() -> None:
    require(
        BINARY.is_file() and os.access(BINARY, os.X_OK),
        f"no llama-server at {BINARY}: run scripts/build_llama_cpp.sh llama-server",
    )
    pytest.importorskip("gguf", reason="the gguf package writes the tiny model")


@pytest.fixture
def llama_server(tmp_path) -> Iterator[RealLlamaServer]:
    _require_binary()
    server = RealLlamaServer(tmp_path)
    yield server
    server.stop()


def test_llama_server_is_read_as_llama_server(llama_server):
    found = asyncio.run(
        probe_node(llama_server.url, timeout=5, with_tags=True, kind="llamacpp")
    )
    assert found.ok, found.error
    assert found.version.startswith("b")  # its build, as /props says
    [model] = found.loaded_models
    assert (model["name"], model["context_length"]) == (MODEL, CONTEXT_PER_SLOT)
    assert model["size"] > 0
    assert found.serving["slots_total"] == SLOTS
    assert found.serving["slots_busy"] == 0
    assert found.serving["context_per_slot"] == CONTEXT_PER_SLOT
    assert found.serving["requests_running"] == 0
    assert set(found.counters) == {"prompt_tokens", "generated_tokens"}


def test_a_streamed_completion_through_the_gateway_shows_a_slot_busy_and_tokens(
    live_server_factory, llama_server
):
    gateway_port = free_port()
    server = live_server_factory(
        SOLLOL_NODES=f"llamacpp+{llama_server.url}",
        SOLLOL_GATEWAY_PORT=str(gateway_port),
        **FAST_PROBING,
    )
    server.start()

    def node() -> dict:
        """The one node, or {} before the configured node is stored."""
        listed = requests.get(f"{server.url}/api/network/nodes", timeout=5).json()
        assert len(listed["nodes"]) <= 1
        return listed["nodes"][0] if listed["nodes"] else {}

    first = wait_for(lambda: (n := node()).get("status") == "healthy" and n, timeout=15)
    assert first["kind"] == "llamacpp"
    chat = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
        "max_tokens": 3500,  # a few seconds of noise from the tiny model
        "temperature": 1.0,
        "ignore_eos": True,
    }
    gateway = f"http://{HOST}:{gateway_port}"
    wait_for(
        lambda: requests.get(f"{gateway}/v1/models", timeout=5).json()["data"],
        what="the gateway to list the llama-server's model",
    )
    # What the dashboard says of the node, read every 0.1 s from the start of the
    # stream to its end and after.
    seen: dict = {"busy": False, "last": {}}
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            serving = node().get("serving") or {}
            seen["busy"] |= serving.get("slots_busy") == 1
            seen["last"] = serving
            watching.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines = 0
    try:
        with requests.post(
            f"{gateway}/v1/chat/completions", json=chat, stream=True, timeout=60
        ) as reply:
            assert reply.status_code == 200, reply.text
            last = b""
            for line in reply.iter_lines():
                if line:
                    lines, last = lines + 1, line
        assert last == b"data: [DONE]"
        assert lines > 1000  # the tokens came as they were made
        # What a user sees: the slot busy while it generated, then free. (The
        # probes' token rate, the rise of llama-server's counters between two
        # probes, is not asserted here: on a loaded machine no read of the API
        # saw it, though it holds a whole probe interval; its arithmetic is
        # network/tests/test_servers.py's. The request's own rate is below.)
        deadline = time.monotonic() + 15
        while not (seen["busy"] and seen["last"].get("slots_busy") == 0):
            assert time.monotonic() < deadline, f"not the slot busy, then free: {seen}"
            time.sleep(0.05)
    finally:
        watching.set()
        watcher.join(5)

    def recorded():
        metrics = requests.get(f"{server.url}/api/metrics?window=5m", timeout=5).json()
        return metrics["totals"]["requests"] >= 1 and metrics

    metrics = wait_for(recorded, what="the gateway's request in /api/metrics")
    assert metrics["totals"]["completion_tokens"] >= 100  # usage asked of the node
    assert metrics["totals"]["tokens_per_second"] > 0
    prometheus = requests.get(f"{server.url}/api/prometheus", timeout=5).text
    address = llama_server.url.removeprefix("http://")
    assert f'sollol_node_slots_total{{node="{address}"}} 2' in prometheus


def test_a_killed_llama_server_is_reported_within_an_interval_and_a_timeout(
    live_server_factory, llama_server
):
    server = live_server_factory(
        SOLLOL_NODES=f"llamacpp+{llama_server.url}", **FAST_PROBING
    )
    server.start()

    def healthy() -> bool:
        listed = requests.get(f"{server.url}/api/network/nodes", timeout=5).json()
        return [n["status"] for n in listed["nodes"]] == ["healthy"]

    wait_for(healthy, timeout=15)
    with connect(f"ws://127.0.0.1:{server.port}/ws/network/nodes") as ws:
        killed = time.monotonic()
        llama_server.process.kill()  # the process this test started, by its PID
        event = events_until(ws, lambda e: e["type"] == "status_change", timeout=10)
        noticed = time.monotonic() - killed
    assert event["node"] == llama_server.url
    assert (event["old_status"], event["new_status"]) == ("healthy", "unhealthy")
    assert noticed <= 3.5, noticed


@pytest.fixture
def rpc_server(tmp_path) -> Iterator[RealServer]:
    require(
        RPC_BINARY.is_file() and os.access(RPC_BINARY, os.X_OK),
        f"no ggml-rpc-server at {RPC_BINARY}: run scripts/build_rpc_server.sh",
    )
    server = RealServer(tmp_path / "ggml-rpc-server.log")
    yield server
    server.stop()


def test_a_llama_server_on_a_real_rpc_backend_holds_it_and_both_hear_it_lost(
    live_server_factory, rpc_server, tmp_path
):
    """llama-server --rpc: the real ggml-rpc-server shows busy and held by that
    coordinator while it serves; killed, its loss is an event on both."""
    _require_binary()
    backend = f"{HOST}:{rpc_server.port}"
    coordinator = RealLlamaServer(tmp_path, rpc=backend)
    try:
        server = live_server_factory(
            SOLLOL_NODES=f"llamacpp+{coordinator.url}",
            SOLLOL_RPC_BACKENDS=backend,
            **FAST_PROBING,
        )
        server.start()

        def held() -> dict | None:
            listed = requests.get(f"{server.url}/api/network/backends", timeout=5)
            [entry] = listed.json()["backends"]
            return entry if entry["coordinator"] else None

        entry = wait_for(held, timeout=20, what="the backend held by the coordinator")
        assert entry["status"] == "busy"
        assert entry["coordinator"] == coordinator.url.removeprefix("http://")
        assert entry["coordinator_source"] == "inferred"
        with connect(f"ws://127.0.0.1:{server.port}/ws/network/nodes") as ws:
            rpc_server.process.kill()  # the process this test started, by its PID
            event = events_until(
                ws, lambda e: e["type"] == "rpc_backend_lost", timeout=15
            )
        assert event["backend"] == backend
        assert event["node"] == coordinator.url
    finally:
        coordinator.stop()

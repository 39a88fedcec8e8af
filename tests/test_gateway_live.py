"""The gateway in the real servers: `serve --gateway-port`, /ollama/, daphne and
`manage.py gateway`."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import ollama
import pytest
import requests
from websockets.sync.client import connect

from simulator.ollama import running_fleet
from tests.faults import MACHINE_REDIS, redis_prefix
from tests.liveserver import NodeProcess, free_port, wait_for

pytestmark = pytest.mark.live

CHAT = [{"role": "user", "content": "hello"}]


def fleet_env(fleet, **more):
    return {
        "SOLLOL_OLLAMA_NODES": ",".join(fleet.urls),
        "SOLLOL_PROBE_TIMEOUT": "1",
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        **more,
    }


def gateway_sees(url: str, model: str):
    """Wait until the gateway lists the model (it reads the nodes every second)."""

    def listed():
        names = [
            m["name"]
            for m in requests.get(f"{url}/api/tags", timeout=5).json()["models"]
        ]
        return model in names

    wait_for(listed, timeout=15, what=f"the gateway at {url} to list {model}")


def statuses(server) -> dict[str, str]:
    """{address: status} of the nodes the dashboard watches."""
    nodes = requests.get(f"{server.url}/api/network/nodes", timeout=5).json()
    return {n["address"]: n["status"] for n in nodes["nodes"]}


@pytest.fixture
def fleet():
    with running_fleet(2, base="127.0.0.91", port=0, seed=11) as fleet:
        for node in fleet.nodes:
            node.pull("llama3.2:3b")
        yield fleet


def test_serve_answers_on_its_gateway_port_and_under_ollama(live_server_factory, fleet):
    gateway_port = free_port()
    server = live_server_factory(
        **fleet_env(
            fleet, SOLLOL_PROBE_INTERVAL="1", SOLLOL_GATEWAY_PORT=str(gateway_port)
        )
    )
    server.start()
    for base in (f"http://127.0.0.1:{gateway_port}", f"{server.url}/ollama"):
        gateway_sees(base, "llama3.2:3b")
        client = ollama.Client(host=base, headers={"X-SOLLOL-App": "live-test"})
        reply = client.chat(model="llama3.2:3b", messages=CHAT)
        assert reply.message.content.startswith("Simulated reply from 127.0.0.9")
        streamed = list(client.generate(model="llama3.2:3b", prompt="x", stream=True))
        assert streamed[-1].done and streamed[-1].eval_count
        assert requests.get(base + "/").text == "Ollama is running"

    def recorded():
        metrics = requests.get(f"{server.url}/api/metrics?window=5m", timeout=5).json()
        return metrics["totals"]["requests"] >= 4 and metrics

    metrics = wait_for(recorded, what="the gateway's four requests in /api/metrics")
    assert metrics["totals"]["completion_tokens"] > 0
    assert [a["app_id"] for a in metrics["per_application"]] == ["live-test"]


def writer_processes(pid: int) -> list[int]:
    """Return the gateway writer processes among pid's children."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:  # threads and children come and go while they are read
            with open(f"/proc/{pid}/task/{task}/children") as children:
                listed = children.read().split()
        except FileNotFoundError:
            continue
        for child in listed:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    command = cmdline.read()
            except FileNotFoundError:
                continue
            if b"network.gateway.writer_process" in command:
                found.append(int(child))
    return found


def test_the_writer_process_records_announces_and_comes_back(
    live_server_factory, fleet
):
    """serve's gateway writes its records in a writer process of its own: what that
    process announces reaches the page's sockets (the in-memory channel layer lives
    in the serving process), and one that dies is started again."""
    server = live_server_factory(
        **fleet_env(fleet, SOLLOL_GATEWAY_EVENT_INTERVAL="0.5")
    )
    server.start()
    base = f"{server.url}/ollama"
    gateway_sees(base, "llama3.2:3b")
    client = ollama.Client(host=base, headers={"X-SOLLOL-App": "writer-test"})
    stream = server.url.replace("http", "ws") + "/ws/ollama_activity?samples=1"
    with connect(stream, open_timeout=10) as socket_:
        client.chat(model="llama3.2:3b", messages=CHAT)
        heard: dict[str, dict] = {}
        deadline = time.monotonic() + 10
        while not {"model_processing", "traces"} <= heard.keys():
            assert time.monotonic() < deadline, f"heard only {sorted(heard)}"
            message = json.loads(socket_.recv(timeout=10))
            if message.get("type") == "model_processing":
                heard["model_processing"] = message
            elif message.get("type") == "samples" and message.get("traces"):
                heard["traces"] = message
    assert heard["model_processing"]["app_ids"] == ["writer-test"]
    assert heard["model_processing"]["source"] == "gateway"
    [trace_id] = heard["traces"]["traces"]
    traces = requests.get(f"{server.url}/api/traces", timeout=5).json()
    assert trace_id in [t["trace_id"] for t in traces["traces"]]

    [writer] = wait_for(lambda: writer_processes(server.process.pid))
    os.kill(writer, signal.SIGKILL)  # a child of the server this test started
    [again] = wait_for(
        lambda: [p for p in writer_processes(server.process.pid) if p != writer],
        what="a new writer process",
    )
    assert "ended (exit -9); starting another" in server.log()

    def recorded():
        client.chat(model="llama3.2:3b", messages=CHAT)
        metrics = requests.get(f"{server.url}/api/metrics?window=5m", timeout=5).json()
        return metrics["totals"]["requests"] >= 2

    wait_for(recorded, what="a request recorded by the new writer process")


def test_a_node_that_fails_a_request_is_probed_at_once(live_server_factory, fleet):
    victim, other = fleet.nodes
    # Loaded on the victim only, before the first (and, at 60 s, only) probe:
    # the gateway's first choice is the victim.
    victim.load("llama3.2:3b", keep_alive=-1)
    other.unload("llama3.2:3b")
    # Probes every 60 s: only the gateway's call for a probe can tell so soon.
    server = live_server_factory(**fleet_env(fleet, SOLLOL_PROBE_INTERVAL="60"))
    server.start()
    base = f"{server.url}/ollama"
    gateway_sees(base, "llama3.2:3b")

    wait_for(
        lambda: set(statuses(server).values()) == {"healthy"}, what="healthy nodes"
    )
    time.sleep(1.5)  # the gateway has read the rows since
    victim.die()
    started = time.monotonic()
    try:
        reply = ollama.Client(host=base).generate(
            model="llama3.2:3b", prompt="x", options={"num_predict": 3}
        )
        assert reply.done
        wait_for(
            lambda: statuses(server)[victim.address] == "unhealthy",
            timeout=5,
            what="the failed node probed and found unhealthy",
        )
        assert time.monotonic() - started < 5
    finally:
        victim.revive()


def test_a_node_killed_by_its_pid_between_requests_is_left_for_the_next(
    live_server_factory, fleet, tmp_path
):
    """A node's machine dies between two requests: the next one, sent while the
    rows still say the node is healthy and holds the model, is answered by another
    node, the client sees only that answer, and the dead node is probed at once."""
    node = NodeProcess("127.0.0.93", free_port("127.0.0.93"), tmp_path)
    node.start()
    try:
        direct = ollama.Client(host=node.url)
        direct.pull("llama3.2:3b")
        # Loaded there only: the gateway's first choice until it learns otherwise.
        direct.generate(model="llama3.2:3b", prompt="x", keep_alive=-1)
        for other in fleet.nodes:
            other.unload("llama3.2:3b")
        server = live_server_factory(
            **fleet_env(
                fleet,
                SOLLOL_OLLAMA_NODES=",".join([node.url, *fleet.urls]),
                SOLLOL_PROBE_INTERVAL="60",  # only the gateway's call probes soon
            )
        )
        server.start()
        base = f"{server.url}/ollama"

        wait_for(
            lambda: list(statuses(server).values()) == ["healthy"] * 3,
            timeout=15,
            what="three healthy nodes",
        )
        gateway_sees(base, "llama3.2:3b")
        time.sleep(1.5)  # the gateway has read the rows since
        client = ollama.Client(host=base, headers={"X-SOLLOL-App": "kill-test"})
        first = client.generate(model="llama3.2:3b", prompt="x")
        assert first.response.startswith(f"Simulated reply from {node.address}")

        node.kill()
        started = time.monotonic()
        second = client.generate(model="llama3.2:3b", prompt="x")
        others = [n.address for n in fleet.nodes]
        assert second.done
        assert second.response.split(" by ")[0].rsplit(" ", 1)[1] in others
        streamed = list(client.chat(model="llama3.2:3b", messages=CHAT, stream=True))
        assert streamed[-1].done
        wait_for(
            lambda: statuses(server)[node.address] == "unhealthy",
            timeout=5,
            what="the killed node probed and found unhealthy",
        )
        assert time.monotonic() - started < 5

        def recorded():
            metrics = requests.get(
                f"{server.url}/api/metrics?window=5m", timeout=5
            ).json()
            return metrics["totals"]["requests"] >= 3 and metrics

        metrics = wait_for(recorded, what="the three requests in /api/metrics")
        assert metrics["totals"]["errors"] == 0
        served = {row["node"]: row["requests"] for row in metrics["per_node"]}
        assert served.get(node.address) == 1
        assert sum(served.get(address, 0) for address in others) == 2
    finally:
        node.stop()


@pytest.mark.parametrize("kind", ["gateway", "lean-gateway"])
def test_a_gateway_of_its_own_in_production(live_server_factory, fleet, kind):
    """daphne sollol_site.asgi:gateway, and manage.py gateway."""
    prober = live_server_factory(**fleet_env(fleet, SOLLOL_PROBE_INTERVAL="1"))
    prober.start()
    gateway = live_server_factory(kind, database=prober.database, **fleet_env(fleet))
    gateway.start()
    gateway_sees(gateway.url, "llama3.2:3b")
    client = ollama.Client(host=gateway.url)
    assert client.chat(model="llama3.2:3b", messages=CHAT).done
    assert "llama3.2:3b" in [m.model for m in client.list().models]

    def recorded():
        metrics = requests.get(f"{prober.url}/api/metrics?window=5m", timeout=5).json()
        return metrics["totals"]["requests"] >= 1

    wait_for(recorded, what="the gateway's request in the dashboard's metrics")


@pytest.fixture
def channel_prefix():
    """A SOLLOL_CHANNEL_PREFIX of this test's own on the machine's Redis."""
    with redis_prefix("live") as prefix:
        yield prefix


def test_two_gateways_hold_one_nodes_limit_together(
    live_server_factory, channel_prefix
):
    delay = 1.5
    with running_fleet(1, base="127.0.0.93", port=0, seed=13) as fleet:
        [node] = fleet.nodes
        node.pull("llama3.2:3b")
        env = fleet_env(
            fleet,
            SOLLOL_PROBE_INTERVAL="60",  # probed once, before the node is slowed
            REDIS_URL=MACHINE_REDIS,
            SOLLOL_CHANNEL_PREFIX=channel_prefix,  # one fleet: the same keys
            SOLLOL_GATEWAY_NODE_CONCURRENCY="1",
        )
        dashboard = live_server_factory(**env)
        dashboard.start()
        # One on daphne, one on `manage.py gateway`: both production servers.
        gateways = [
            live_server_factory(kind, database=dashboard.database, **env)
            for kind in ("gateway", "lean-gateway")
        ]
        for gateway in gateways:
            gateway.start()
            gateway_sees(gateway.url, "llama3.2:3b")

        def node_load():
            [row] = requests.get(
                f"{dashboard.url}/api/network/nodes", timeout=5
            ).json()["nodes"]
            return row["in_flight"], row["queued"]

        seen = []
        done = threading.Event()

        def watch():  # what the dashboard shows while the requests run
            while not done.is_set():
                seen.append(node_load())
                time.sleep(0.05)

        def generate(order: int):
            time.sleep(order * 0.2)  # in this order, to each gateway in turn
            reply = requests.post(
                f"{gateways[order % 2].url}/api/generate",
                json={"model": "llama3.2:3b", "prompt": "x", "stream": False},
                timeout=30,
            )
            return reply.status_code, time.monotonic()

        node.set_delay(delay)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            with ThreadPoolExecutor(4) as pool:
                replies = list(pool.map(generate, range(4)))
        finally:
            done.set()
            watcher.join(10)
            node.set_delay(0)
        wait_for(lambda: node_load() == (0, 0), what="the slot given back")

    assert [status for status, _ in replies] == [200] * 4
    finished = [at for _, at in replies]
    # One at a time, first come first served across both gateways: each answer
    # comes a whole node delay after the one before.
    assert finished == sorted(finished)
    gaps = [b - a for a, b in itertools.pairwise(finished)]
    assert min(gaps) > delay * 0.8, gaps
    # The dashboard, a process of its own, counted both gateways' requests.
    assert max(active for active, _ in seen) == 1
    assert (1, 3) in seen, seen

"""Probes and collectors through a real nginx in front of simulated nodes.

nginx (the Debian package) runs as this module's own process, by PID, with its
own configuration, logs and temporary paths in a temporary directory, on
127.0.0.41. Each server block is one way a proxy in front of an Ollama node
answers: keep-alive, `keepalive_timeout 0` (Content-Length and Connection:
close), HTTP/1.0 to the node, gzip, chunked, and two that demand credentials.
A raw request first checks that each variant sends what it claims.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.utils import timezone

from activity.models import Event
from conftest import require
from core.httpclient import Credential
from frameworks import collectors
from frameworks.tests.fakes import FakeDashboard
from network.cycle import run_cycle
from network.probes import probe_node
from network.services import lifecycle
from simulator.ollama import running_fleet

HOST = "127.0.0.41"
NODE_BASE = "127.0.0.42"
VERSION = "0.13.7"  # not the simulator's default, so a match means it came through
TOKEN = "s3cret"
USER, PASSWORD = "ollama", "pa55 word"


def _nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# One server block per variant; {upstream} is the node, {ray} the fake Ray.
VARIANTS = {
    # Ollama answers 403 to a Host it does not know (its DNS-rebinding guard),
    # such as the upstream's name "node": the node's own address goes instead.
    "keepalive": """
        keepalive_timeout 30s;
        location / {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream};
        }}""",
    "close": """
        keepalive_timeout 0;
        location / {{ proxy_pass http://{upstream}; }}""",
    "http10": """
        location / {{ proxy_pass http://{upstream}; proxy_http_version 1.0; }}""",
    "gzip": """
        gzip on;
        gzip_types application/json;
        gzip_min_length 1;
        location / {{ proxy_pass http://{upstream}; }}""",
    # sub_filter (on a string no reply holds) drops the node's Content-Length,
    # and without buffering nginx streams the reply on in chunks.
    "chunked": """
        chunked_transfer_encoding on;
        location / {{
            proxy_pass http://{upstream};
            proxy_buffering off;
            sub_filter_types application/json;
            sub_filter "never-in-a-reply" "x";
        }}""",
    "bearer": """
        location / {{
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
            proxy_pass http://{upstream};
        }}""",
    "basic": """
        location / {{
            auth_basic "ollama";
            auth_basic_user_file {root}/htpasswd;
            proxy_pass http://{upstream};
        }}""",
    "ray": """
        gzip on;
        gzip_types application/json;
        gzip_min_length 1;
        location / {{ proxy_pass http://{ray}; proxy_buffering off; }}""",
}

CONFIG = """
{user}
worker_processes 1;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    default_type application/octet-stream;
    log_format probes '$server_port|$connection|$connection_requests|$request_uri|'
                      '$status|$http_accept_encoding|$sent_http_content_encoding';
    access_log {root}/access.log probes;
    upstream node {{ server {upstream}; keepalive 4; }}
{servers}
}}
"""


LOG_FIELDS = ("port", "connection", "requests", "uri", "status", "asked", "encoding")


class Nginx:
    """An nginx process of this test's own, stopped by its PID."""

    def __init__(self, root: Path, upstream: str, ray: str) -> None:
        self.root = root
        self.ports = {name: _free_port() for name in VARIANTS}
        servers = "\n".join(
            f"    server {{\n        listen {HOST}:{self.ports[name]};"
            + body.format(upstream=upstream, ray=ray, token=TOKEN, root=root)
            + "\n    }"
            for name, body in VARIANTS.items()
        )
        # nginx's workers drop root for `nobody`, who may not enter pytest's
        # temporary directories; as root they stay root, on loopback only.
        user = "user root;" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            CONFIG.format(user=user, root=root, upstream=upstream, servers=servers)
        )
        # nginx checks {SHA} entries: base64 of the password's SHA-1.
        digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
        (root / "htpasswd").write_text(f"{USER}:{{SHA}}{digest}\n")
        self.process: subprocess.Popen | None = None

    def url(self, variant: str) -> str:
        return f"http://{HOST}:{self.ports[variant]}"

    def start(self, binary: str) -> None:
        self.process = subprocess.Popen(
            [binary, "-c", f"{self.root}/nginx.conf", "-p", str(self.root)]
            + ["-e", f"{self.root}/error.log"]
            + ["-g", f"daemon off; pid {self.root}/nginx.pid;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        for port in self.ports.values():
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"nginx exited: {self.process.stderr.read()!r}")
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the master stops its workers
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()

    def log_lines(self, variant: str) -> list[dict[str, str]]:
        """Return what the access log says of variant's requests."""
        lines = (self.root / "access.log").read_text().splitlines()
        return [
            dict(zip(LOG_FIELDS, line.split("|"), strict=True))
            for line in lines
            if line.startswith(f"{self.ports[variant]}|")
        ]


@pytest.fixture(scope="module")
def fleet():
    with running_fleet(1, base=NODE_BASE, port=0, seed=3, versions=(VERSION,)) as f:
        node = f.nodes[0]
        node.load("llama3.2:3b", keep_alive=-1)
        yield f


@pytest.fixture(scope="module")
def ray():
    dashboard = FakeDashboard.ray()
    yield dashboard
    dashboard.close()


@pytest.fixture(scope="module")
def nginx(fleet, ray, tmp_path_factory):
    binary = _nginx()
    require(binary is not None, "nginx is not installed (apt-get install nginx)")
    server = Nginx(
        tmp_path_factory.mktemp("nginx"),
        fleet.nodes[0].address,
        ray.url.removeprefix("http://"),
    )
    server.start(binary)
    yield server
    server.stop()


def raw_get(url: str, path: str, *headers: str) -> tuple[str, bytes]:
    """Send one GET as bytes; return the reply's head (lower case) and its body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        extra = "".join(f"{header}\r\n" for header in headers)
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
            "Connection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.decode("latin-1").lower(), body


def assert_probe_saw_the_node(result, node) -> None:
    assert result.ok and result.answered and not result.unauthorized, result.error
    assert result.version == VERSION == node.snapshot()["version"]
    assert [m["name"] for m in result.loaded_models] == node.loaded_models()
    assert "llama3.2:3b" in node.loaded_models()
    assert [m["name"] for m in result.disk_models] == node.disk_models()


async def probe(url: str, **options):
    return await probe_node(url, timeout=3.0, with_tags=True, **options)


async def test_keep_alive_proxying_serves_the_probe_on_one_connection(fleet, nginx):
    head, _ = raw_get(nginx.url("keepalive"), "/api/version")
    assert "content-length:" in head and "transfer-encoding" not in head

    result = await probe(nginx.url("keepalive"))

    assert_probe_saw_the_node(result, fleet.nodes[0])
    lines = nginx.log_lines("keepalive")[-3:]
    assert [line["uri"] for line in lines] == ["/api/version", "/api/ps", "/api/tags"]
    # One connection, its requests counted 1, 2, 3: the probe kept it alive.
    assert len({line["connection"] for line in lines}) == 1
    assert [line["requests"] for line in lines] == ["1", "2", "3"]


async def test_a_length_with_connection_close_is_a_healthy_node(fleet, nginx):
    head, _ = raw_get(nginx.url("close"), "/api/version")
    assert "connection: close" in head and "content-length:" in head

    result = await probe(nginx.url("close"))

    assert_probe_saw_the_node(result, fleet.nodes[0])
    lines = nginx.log_lines("close")[-3:]
    assert [line["uri"] for line in lines] == ["/api/version", "/api/ps", "/api/tags"]
    # nginx closed after every reply: each GET came on a connection of its own.
    assert len({line["connection"] for line in lines}) == 3


async def test_http_1_0_to_the_node_is_a_healthy_node(fleet, nginx):
    before = fleet.nodes[0].snapshot()["connections_accepted"]

    result = await probe(nginx.url("http10"))

    assert_probe_saw_the_node(result, fleet.nodes[0])
    # HTTP/1.0 without keep-alive: nginx opened one connection per GET.
    assert fleet.nodes[0].snapshot()["connections_accepted"] - before == 3


async def test_gzip_compressed_json_is_read(fleet, nginx):
    head, body = raw_get(nginx.url("gzip"), "/api/tags", "Accept-Encoding: gzip")
    assert "content-encoding: gzip" in head
    assert body[:2] == b"\x1f\x8b" or b"\r\n\x1f\x8b" in body[:12]

    result = await probe(nginx.url("gzip"))

    assert_probe_saw_the_node(result, fleet.nodes[0])
    lines = nginx.log_lines("gzip")[-3:]
    assert [line["uri"] for line in lines] == ["/api/version", "/api/ps", "/api/tags"]
    assert all("gzip" in line["asked"] for line in lines)  # the probe asked for it
    assert all(line["encoding"] == "gzip" for line in lines)  # and got it


async def test_chunked_replies_are_read(fleet, nginx):
    head, body = raw_get(nginx.url("chunked"), "/api/version")
    assert "transfer-encoding: chunked" in head and "content-length" not in head
    assert body.endswith(b"0\r\n\r\n")

    result = await probe(nginx.url("chunked"))

    assert_probe_saw_the_node(result, fleet.nodes[0])


async def test_a_node_demanding_a_bearer_token(fleet, nginx):
    url = nginx.url("bearer")
    head, _ = raw_get(url, "/api/version")
    assert head.startswith("http/1.1 401")

    result = await probe(url, credential=Credential.bearer(TOKEN))
    assert_probe_saw_the_node(result, fleet.nodes[0])

    without = await probe(url)
    assert without.answered and without.unauthorized and not without.ok
    assert without.error == "/api/version answered HTTP 401: needs credentials"

    wrong = await probe(url, credential=Credential.bearer("guess"))
    assert wrong.answered and wrong.unauthorized and not wrong.ok
    assert wrong.error == "/api/version: the credentials were refused (HTTP 401)"
    assert "guess" not in wrong.error


async def test_a_node_demanding_basic_auth(fleet, nginx):
    url = nginx.url("basic")
    head, _ = raw_get(url, "/api/version")
    assert head.startswith("http/1.1 401") and "www-authenticate: basic" in head

    result = await probe(url, credential=Credential.basic(USER, PASSWORD))
    assert_probe_saw_the_node(result, fleet.nodes[0])

    without = await probe(url)
    assert without.answered and without.unauthorized and not without.ok
    assert "needs credentials" in without.error

    wrong = await probe(url, credential=Credential.basic(USER, "wrong"))
    assert wrong.answered and wrong.unauthorized and not wrong.ok
    assert "the credentials were refused (HTTP 401)" in wrong.error

    # Userinfo in the node's URL is a Basic credential too.
    host_port = url.removeprefix("http://")
    from_url = await probe(f"http://{USER}:pa55%20word@{host_port}")
    assert_probe_saw_the_node(from_url, fleet.nodes[0])
    wrong_in_url = await probe(f"http://{USER}:guess@{host_port}")
    assert wrong_in_url.unauthorized and "guess" not in wrong_in_url.error
    assert "the credentials were refused (HTTP 401)" in wrong_in_url.error


async def test_a_ray_dashboard_behind_gzip_and_chunks_is_collected(ray, nginx):
    url = nginx.url("ray")
    head, _ = raw_get(url, "/api/version", "Accept-Encoding: gzip")
    assert "content-encoding: gzip" in head and "transfer-encoding: chunked" in head

    ray.requests.clear()

    result = await collectors.collect_ray(url, token=TOKEN, timeout=5)

    assert result.status == "active", result.error
    assert result.data["ray_version"] == "2.60.0"
    assert result.data["nodes_total"] == 1
    assert result.warnings == []
    lines = nginx.log_lines("ray")[-len(collectors.RAY_PATHS) :]
    assert sorted(line["uri"] for line in lines) == sorted(
        collectors.RAY_PATHS.values()
    )
    assert all(line["encoding"] == "gzip" for line in lines)
    # The token went through the client and nginx to the dashboard.
    assert [h.get("Authorization") for _, h in ray.requests] == [
        f"Bearer {TOKEN}"
    ] * len(collectors.RAY_PATHS)


@pytest.mark.django_db(transaction=True)
def test_the_operators_credentials_make_a_guarded_node_healthy_and_stay_secret(
    fleet, nginx, client, settings, caplog
):
    """End to end: configuration → probe cycle → status, API, events and logs."""
    bearer = nginx.url("bearer")
    basic = nginx.url("basic").replace("//", f"//{USER}:{quote(PASSWORD)}@", 1)
    settings.SOLLOL_DISCOVER_LOCALHOST = False
    settings.SOLLOL_PROBE_TIMEOUT = 2.0
    secrets = (TOKEN, PASSWORD, quote(PASSWORD))

    def cycle_with(*configured: str) -> dict[str, dict]:
        settings.SOLLOL_OLLAMA_NODES = list(configured)
        lifecycle.sync_configured(now=timezone.now())
        run_cycle(now=timezone.now())
        answer = client.get("/api/network/nodes")
        assert not any(secret in answer.content.decode() for secret in secrets)
        return {node["url"]: node for node in answer.json()["nodes"]}

    # The bearer node without its token: there and answering, so not down.
    nodes = cycle_with(bearer, basic)
    guarded = nodes[bearer]
    assert guarded["status"] == "unauthorized" and not guarded["usable"]
    assert guarded["last_error"] == "/api/version answered HTTP 401: needs credentials"
    assert guarded["credential"] is None
    behind_basic = nodes[nginx.url("basic")]
    assert behind_basic["status"] == "healthy" and behind_basic["version"] == VERSION
    assert behind_basic["credential"] == "basic ***"
    assert "llama3.2:3b" in {m["name"] for m in behind_basic["loaded_models"]}
    health = client.get("/api/network/health").json()
    assert health["nodes_unauthorized"] == 1
    assert "refuse the dashboard" in health["reason"]

    # The operator adds the token: the same node, healthy at the next cycle.
    nodes = cycle_with(f"{bearer};token={TOKEN}", basic)
    assert nodes[bearer]["status"] == "healthy"
    assert nodes[bearer]["credential"] == "bearer ***"
    assert nodes[bearer]["id"] == guarded["id"] and nodes[bearer]["version"] == VERSION
    changes = [
        (e.payload["old_status"], e.payload["new_status"])
        for e in Event.objects.filter(type="status_change", payload__node=bearer)
    ]
    assert changes == [("unknown", "unauthorized"), ("unauthorized", "healthy")]

    # An application may not hand out credentials: refused, and said masked.
    lifecycle.ensure_reported(
        {"nodes": [f"http://{USER}:{PASSWORD}@127.0.0.43:11434"]}, now=timezone.now()
    )
    assert "127.0.0.43" not in str(client.get("/api/network/nodes").content)
    assert "carries credentials" in caplog.text
    events = " ".join(
        f"{event.message} {event.payload}" for event in Event.objects.all()
    )
    for secret in secrets:
        assert secret not in events and secret not in caplog.text

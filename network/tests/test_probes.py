"""Probing real (simulated) Ollama nodes over HTTP, on loopback."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import time
import tracemalloc
import zlib

import pytest

from conftest import require
from core import httpclient
from core.httpclient import Credential
from network.probes import MAX_BODY, probe_node
from network.services import lifecycle, recording
from simulator.ollama import running_fleet


@pytest.fixture(scope="module")
def fleet():
    with running_fleet(3, base="127.0.0.2", port=0, seed=7) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def _healed(fleet):
    yield
    for node in fleet.nodes:
        node.heal()


async def probe(url, *, timeout=1.0, with_tags=True):
    return await probe_node(url, timeout=timeout, with_tags=with_tags)


async def test_it_reads_version_loaded_models_and_models_on_disk(fleet):
    node = fleet.nodes[0]
    node.load("llama3.2:3b", size_vram=2_000_000_000)
    result = await probe(node.url)
    assert result.ok and result.answered
    assert result.version == node.snapshot()["version"]
    [loaded] = [m for m in result.loaded_models if m["name"] == "llama3.2:3b"]
    assert loaded["size_vram"] == 2_000_000_000
    assert loaded["size"] >= loaded["size_vram"]
    assert loaded["expires_at"].startswith("20")
    assert loaded["details"]["family"] == "llama"
    assert "llama3.2:3b" in {m["name"] for m in result.disk_models}
    assert result.latency_ms < 1000


async def test_it_reads_tags_only_when_asked(fleet):
    result = await probe(fleet.nodes[1].url, with_tags=False)
    assert result.ok and result.disk_models is None


async def test_it_reports_a_dead_node_at_once(fleet):
    node = fleet.nodes[1]
    node.die()
    started = time.monotonic()
    result = await probe(node.url, timeout=5.0)
    assert not result.answered and "refused" in result.error
    assert time.monotonic() - started < 2.0
    node.revive()
    assert (await probe(node.url)).ok


async def test_it_gives_a_hanging_node_one_timeout(fleet):
    node = fleet.nodes[2]
    node.hang()
    started = time.monotonic()
    result = await probe(node.url, timeout=1.0)
    assert not result.answered and "no answer within 1.0s" in result.error
    # One timeout, not one per request (version, ps, tags).
    assert time.monotonic() - started < 1.9


async def test_it_reports_a_busy_node_as_answering_with_an_error(fleet):
    node = fleet.nodes[0]
    node.set_error(503)
    result = await probe(node.url)
    assert result.answered and not result.ok
    assert "503" in result.error


async def test_it_measures_a_slow_node(fleet):
    node = fleet.nodes[0]
    node.set_delay(0.3)
    result = await probe(node.url)
    assert result.ok and result.latency_ms >= 300


async def test_it_refuses_something_that_is_not_ollama():
    async def not_ollama(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"status": "ok"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_ollama, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe(f"http://127.0.0.1:{port}")
    finally:
        server.close()
    assert result.answered and not result.ok
    assert "like Ollama" in result.error


async def serve_raw(reply: bytes):
    """Start a server that answers every request on a connection with reply."""

    async def answer(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_it_reads_chunked_replies_as_go_sends_large_ones():
    body = b'{"version":"0.12.3","models":[]}'
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])
    )
    server, url = await serve_raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    async with server:
        result = await probe(url)
    assert result.ok and result.version == "0.12.3" and result.loaded_models == []


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",
    ],
)
async def test_it_tells_a_garbled_reply_from_a_dead_node(reply):
    server, url = await serve_raw(reply)
    async with server:
        result = await probe(url, timeout=0.5)
    assert not result.ok
    assert result.error


@pytest.mark.django_db
def test_what_a_node_says_is_stored_even_when_no_database_could_store_it_as_is():
    """JSON may carry \\u0000 and lone surrogates; PostgreSQL stores neither."""
    from django.utils import timezone

    from network.models import OllamaNode
    from network.probes import NodeProbe, _models

    body = (
        b'{"models": [{"name": "evil\\u0000name", "size": 1, "size_vram": 1,'
        b' "details": {"family": "lone\\ud800"}}]}'
    )
    [model] = _models(body, ("name", "size", "size_vram"))
    assert model["name"] == "evil\ufffdname"
    assert model["details"]["family"] == "lone\ufffd"
    [node] = lifecycle.ensure_nodes(["127.0.0.2"], source="config", now=timezone.now())
    probe = NodeProbe(ok=True, answered=True, latency_ms=1.0, loaded_models=[model])
    recording.record_node_probes([(node.id, probe)], now=timezone.now())
    assert OllamaNode.objects.get().loaded_models[0]["name"] == "evil\ufffdname"


async def test_it_reads_replies_that_end_with_the_connection(fleet):
    """No Content-Length, no chunks: the body ends at EOF, as some proxies answer.

    Each GET then needs a connection of its own; the probe opens it.
    """
    node = fleet.nodes[0]
    connections = []

    async def proxy(reader, writer):
        connections.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        upstream = await probe(node.url)  # what the node says, for the body
        body = {
            "/api/version": b'{"version": "%s"}' % upstream.version.encode(),
            "/api/ps": b'{"models": []}',
            "/api/tags": b'{"models": [{"name": "llama3.2:3b", "size": 1}]}',
        }[path]
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.9", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe(f"http://127.0.0.9:{port}", timeout=3.0)
    finally:
        server.close()
    assert result.ok, result.error
    assert result.version == node.snapshot()["version"]
    assert result.loaded_models == []
    assert [m["name"] for m in result.disk_models] == ["llama3.2:3b"]
    assert len(connections) == 3


async def test_it_reads_replies_with_a_length_that_close_the_connection():
    """Content-Length and Connection: close, as nginx with keepalive_timeout 0 and
    HTTP/1.0-style proxies answer: each GET on a connection of its own.

    Such a node was reported down ("closed the connection mid-reply") when the
    probe sent its second GET on the connection the first reply had closed.
    """
    bodies = {
        "/api/version": b'{"version": "0.12.3"}',
        "/api/ps": b'{"models": [{"name": "llama3.2:3b", "size": 2, "size_vram": 1}]}',
        "/api/tags": b'{"models": [{"name": "llama3.2:3b", "size": 2}]}',
    }

    def handle(path, headers):
        return 200, b"Content-Type: application/json\r\n", bodies[path]

    server, url, requests = await serve_paths(handle, close=True)
    async with server:
        result = await probe(url)
    assert result.ok and result.answered, result.error
    assert result.version == "0.12.3"
    assert [m["name"] for m in result.loaded_models] == ["llama3.2:3b"]
    assert [m["name"] for m in result.disk_models] == ["llama3.2:3b"]
    assert [path for path, _ in requests] == ["/api/version", "/api/ps", "/api/tags"]


async def serve_paths(handle, *, close: bool = False):
    """Start a server calling handle(path, headers) -> (status, headers, body) per
    request, keeping connections alive (close: a Content-Length and Connection:
    close, then closing); return it, its URL and the requests it got."""
    requests = []

    async def answer(reader, writer):
        try:
            while not writer.is_closing():
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.split("\r\n")
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                path = request_line.split(" ")[1]
                requests.append((path, headers))
                status, extra, body = handle(path, headers)
                if close:
                    extra += b"Connection: close\r\n"
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (status, len(body), extra, body)
                )
                await writer.drain()
                if close:
                    writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    return server, url, requests


OLLAMA_BODIES = {
    "/api/version": b'{"version": "0.12.3"}',
    "/api/ps": b'{"models": []}',
    "/api/tags": b'{"models": [{"name": "llama3.2:3b", "size": 1}]}',
}


def demanding(expected: str):
    """Answer like Ollama behind a proxy that wants this Authorization header."""

    def handle(path, headers):
        if headers.get("authorization") != expected:
            return 401, b'WWW-Authenticate: Bearer realm="ollama"\r\n', b"no"
        return 200, b"Content-Type: application/json\r\n", OLLAMA_BODIES[path]

    return handle


async def test_it_sends_the_credential_with_every_get():
    server, url, requests = await serve_paths(demanding("Bearer t0ken"))
    async with server:
        result = await probe_node(
            url, timeout=1.0, with_tags=True, credential=Credential.bearer("t0ken")
        )
    assert result.ok and not result.unauthorized, result.error
    assert [path for path, _ in requests] == ["/api/version", "/api/ps", "/api/tags"]
    assert {h["authorization"] for _, h in requests} == {"Bearer t0ken"}


async def test_a_node_that_wants_credentials_is_unauthorized_not_down():
    server, url, _ = await serve_paths(demanding("Basic " + "b2xsYW1hOnB3"))
    async with server:
        without = await probe(url)
        wrong = await probe_node(
            url,
            timeout=1.0,
            with_tags=False,
            credential=Credential.basic("ollama", "nope"),
        )
        right = await probe_node(
            url,
            timeout=1.0,
            with_tags=False,
            credential=Credential.basic("ollama", "pw"),
        )
    assert without.answered and without.unauthorized and not without.ok
    assert without.error == "/api/version answered HTTP 401: needs credentials"
    assert wrong.answered and wrong.unauthorized and not wrong.ok
    assert wrong.error == "/api/version: the credentials were refused (HTTP 401)"
    assert right.ok and not right.unauthorized


async def test_a_403_on_ps_is_unauthorized_with_the_version_read():
    def handle(path, headers):
        if path == "/api/ps":
            return 403, b"", b"forbidden"
        return 200, b"", OLLAMA_BODIES[path]

    server, url, _ = await serve_paths(handle)
    async with server:
        result = await probe_node(
            url, timeout=1.0, with_tags=False, credential=Credential.bearer("x")
        )
    assert result.answered and result.unauthorized and not result.ok
    assert result.version == "0.12.3"
    assert result.error == "/api/ps: the credentials were refused (HTTP 403)"


async def test_a_ps_that_fails_while_version_answers_says_the_models_went_unread():
    def handle(path, headers):
        if path == "/api/ps":
            return 500, b"", b'{"error": "runner crashed"}'
        return 200, b"", OLLAMA_BODIES[path]

    server, url, _ = await serve_paths(handle)
    async with server:
        result = await probe_node(url, timeout=1.0, with_tags=False)
    assert result.answered and not result.ok and not result.unauthorized
    assert result.version == "0.12.3"
    assert result.models_failed and result.loaded_models is None
    assert result.error == "/api/ps answered HTTP 500"


def test_a_credential_never_shows_its_secret():
    bearer = Credential.bearer("s3cret-token")
    basic = Credential.basic("ollama", "pa55word")
    assert bearer.header() == "Bearer s3cret-token"
    assert basic.header() == "Basic b2xsYW1hOnBhNTV3b3Jk"  # ollama:pa55word
    for credential in (bearer, basic):
        for shown in (repr(credential), str(credential), credential.masked):
            assert "s3cret" not in shown and "pa55" not in shown
            assert "***" in shown
    with pytest.raises(ValueError):
        Credential.bearer("a\r\nX-Injected: 1")
    with pytest.raises(ValueError):
        Credential.basic("a:b", "c")


async def test_it_reads_gzip_and_stops_a_gzip_bomb_at_the_bound(monkeypatch):
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip format
    zeros = bytes(1 << 20)
    bomb_body = b"".join(bomb.compress(zeros) for _ in range(256)) + bomb.flush()
    assert len(bomb_body) < 512 * 1024  # 256 MiB of zeros

    def handle(path, headers):
        assert "gzip" in headers.get("accept-encoding", "")
        if path == "/api/tags":
            return 200, b"Content-Encoding: gzip\r\n", bomb_body
        return 200, b"Content-Encoding: gzip\r\n", gzip.compress(OLLAMA_BODIES[path])

    server, url, _ = await serve_paths(handle)
    async with server:
        plain = await probe(url, with_tags=False)
        tracemalloc.start()
        try:
            bombed = await probe(url, timeout=5.0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert plain.ok and plain.version == "0.12.3", plain.error
    assert bombed.answered and not bombed.ok
    assert f"over {MAX_BODY} bytes" in bombed.error
    assert peak < 4 * MAX_BODY  # not the 256 MiB it would inflate to


async def test_it_says_a_node_closed_mid_reply_only_when_it_did():
    async def cut_short(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"vers')
        await writer.drain()
        writer.close()

    async def silent_close(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    results = []
    for handler in (cut_short, silent_close):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            results.append(await probe(f"http://127.0.0.1:{port}"))
    mid_reply, no_reply = results
    assert not mid_reply.answered
    assert mid_reply.error == "the node closed the connection mid-reply"
    assert not no_reply.answered
    assert no_reply.error == "the node closed the connection without a reply"


async def test_it_does_not_follow_a_redirect():
    """A redirect could lead past the allow-list to an address nobody checked."""

    def handle(path, headers):
        return 302, b"Location: http://127.0.0.3:1/api/version\r\n", b""

    server, url, requests = await serve_paths(handle)
    async with server:
        result = await probe(url)
    assert result.answered and not result.ok
    assert result.error == "/api/version answered HTTP 302"
    assert len(requests) == 1


async def test_it_connects_to_the_checked_address_with_the_urls_name_over_tls(
    tmp_path,
):
    """connect_to: the TCP connection goes there; Host and TLS name stay the URL's."""
    require(shutil.which("openssl") is not None, "openssl is not installed")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec"]
        + ["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
        + ["-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)
    hosts = []

    async def answer(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        hosts.append(next(line for line in head.split("\r\n") if line[:5] == "Host:"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    # 127.0.0.7, where "localhost" does not lead: only connect_to finds it.
    server = await asyncio.start_server(answer, "127.0.0.7", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client_context = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    async with (
        server,
        httpclient.Client(
            f"https://localhost:{port}",
            max_body=1024,
            connect_to="127.0.0.7",
            ssl_context=client_context,
        ) as client,
    ):
        reply = await client.get("/api/version")
    assert reply.status == 200 and reply.body == b"{}"
    assert names == ["localhost"]
    assert hosts == [f"Host: localhost:{port}"]


async def test_a_url_that_is_not_http_is_not_asked():
    result = await probe("ftp://127.0.0.1:21")
    assert not result.answered and not result.ok
    assert result.error == "not an http(s) URL: ftp://127.0.0.1:21"


async def test_it_closes_its_connections_after_each_probe(fleet):
    node = fleet.nodes[1]
    before = node.snapshot()["connections_accepted"]
    results = [await probe(node.url) for _ in range(3)]
    assert all(result.ok for result in results)
    # One connection per probe, kept alive for its three GETs, closed after them.
    assert node.snapshot()["connections_accepted"] - before == 3
    deadline = time.monotonic() + 2
    while node.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert node.open_connections == 0


async def test_a_cycles_shared_pool_uses_one_connection_a_node_and_lets_it_go(fleet):
    accepted = [node.connections_accepted for node in fleet.nodes]
    # A request the hang test left on node 3 keeps its connection, as on a
    # wedged server: count only what this test opens.
    already_open = [node.open_connections for node in fleet.nodes]
    async with httpclient.Pool(connections=8) as pool:
        results = await asyncio.gather(
            *(
                probe_node(node.url, timeout=2.0, with_tags=True, pool=pool)
                for node in fleet.nodes
            )
        )
        assert all(result.ok and result.disk_models for result in results)

        # The last GET asked the node to close: no idle socket waits in the
        # pool, a thousand of which would be a thousand open files. The
        # simulator counts a socket closed when its own loop notices: wait
        # for it, on a loaded CI machine that can take more than a moment.
        def still_open():
            return [
                node.open_connections - before
                for node, before in zip(fleet.nodes, already_open, strict=True)
            ]

        deadline = time.monotonic() + 5
        while any(still_open()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert still_open() == [0, 0, 0]
    after = [node.connections_accepted for node in fleet.nodes]
    assert [b - a for a, b in zip(accepted, after, strict=True)] == [1, 1, 1]

"""sollol.tracing: spans, nesting, errors and W3C traceparent, against a recorder.

The recorder is a tiny HTTP server on 127.0.0.1 that stands in for both the
dashboard (it keeps what the Tracer posts) and a service the app calls (it keeps
the headers each request carried). tests/test_traces_live.py runs the Tracer
against a real dashboard.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sollol import tracing
from sollol.tracing import Tracer, inject, parse_traceparent
from tests.liveserver import REPO, free_port

INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_SPAN = "00f067aa0ba902b7"
INCOMING = f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"


class Recorder:
    """An HTTP server on loopback that records every request it answers."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder.lock:
                    recorder.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def spans(self) -> dict[str, dict]:
        """Return the spans posted to /api/traces, by name."""
        return {
            span["name"]: span
            for request in self.to("/api/traces")
            for span in json.loads(request["body"])["spans"]
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def make_tracer(monkeypatch):
    monkeypatch.delenv("SOLLOL_API_TOKEN", raising=False)
    tracers: list[Tracer] = []

    def make(url: str, service: str = "app", **kwargs) -> Tracer:
        tracer = Tracer(url, service, **kwargs)
        tracers.append(tracer)
        return tracer

    yield make
    for tracer in tracers:
        tracer.close()


@pytest.fixture
def instrumented() -> Iterator[None]:
    tracing.instrument_requests()
    yield
    tracing.uninstrument_requests()


def test_it_nests_spans_and_records_errors(recorder, make_tracer):
    tracer = make_tracer(recorder.url, "router")
    with tracer.trace("handle", route="/generate") as outer:
        with tracer.trace("pick-node") as inner:
            inner.set_attribute("node", "127.0.0.2:11434")
            inner.set_attribute("load", float("nan"))  # not JSON: sent as a string
        with pytest.raises(ValueError), tracer.trace("call-node"):
            raise ValueError("node refused")
    with tracer.trace("another") as separate:
        pass
    assert tracer.flush()

    spans = recorder.spans()
    assert spans["handle"]["parent_span_id"] is None
    assert spans["handle"]["attributes"] == {"route": "/generate"}
    assert spans["pick-node"]["parent_span_id"] == outer.span_id
    assert spans["pick-node"]["trace_id"] == outer.trace_id
    assert spans["pick-node"]["attributes"] == {
        "node": "127.0.0.2:11434",
        "load": "nan",
    }
    failed = spans["call-node"]
    assert failed["parent_span_id"] == outer.span_id
    assert failed["status"] == "error"
    assert failed["status_message"] == "ValueError: node refused"
    assert failed["events"][0]["attributes"]["exception.type"] == "ValueError"
    assert spans["handle"]["status"] == "unset"  # the error was handled inside
    assert separate.trace_id != outer.trace_id
    assert spans["another"]["parent_span_id"] is None
    assert spans["handle"]["start"] <= spans["pick-node"]["start"]
    assert spans["pick-node"]["end"] <= spans["handle"]["end"]
    assert all(span["service"] == "router" for span in spans.values())


def test_it_keeps_concurrent_tasks_in_their_own_spans(recorder, make_tracer):
    tracer = make_tracer(recorder.url)

    async def request(name: str) -> str:
        with tracer.trace(name) as outer:
            await asyncio.sleep(0.01)  # the other task runs meanwhile
            with tracer.trace(f"{name}-child"):
                await asyncio.sleep(0.01)
            return outer.span_id

    async def both() -> list[str]:
        return await asyncio.gather(request("a"), request("b"))

    a_id, b_id = asyncio.run(both())
    tracer.flush()
    spans = recorder.spans()
    assert spans["a-child"]["parent_span_id"] == a_id
    assert spans["b-child"]["parent_span_id"] == b_id
    assert spans["a"]["trace_id"] != spans["b"]["trace_id"]


def test_it_continues_an_incoming_traceparent(recorder, make_tracer):
    tracer = make_tracer(recorder.url)
    with tracer.trace("handle", traceparent=INCOMING.upper()) as span:
        pass
    with tracer.trace("fresh", traceparent="00-garbage") as fresh:
        pass
    tracer.flush()
    assert span.trace_id == INCOMING_TRACE
    posted = recorder.spans()
    assert posted["handle"]["parent_span_id"] == INCOMING_SPAN
    assert posted["handle"]["kind"] == "server"
    assert posted["fresh"]["parent_span_id"] is None
    assert fresh.trace_id != INCOMING_TRACE


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (INCOMING, (INCOMING_TRACE, INCOMING_SPAN)),
        (f" {INCOMING} ", (INCOMING_TRACE, INCOMING_SPAN)),
        (
            f"01-{INCOMING_TRACE}-{INCOMING_SPAN}-01-future",
            (INCOMING_TRACE, INCOMING_SPAN),
        ),
        (f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01-extra", None),
        (f"01-{INCOMING_TRACE}-{INCOMING_SPAN}-01x", None),
        (f"ff-{INCOMING_TRACE}-{INCOMING_SPAN}-01", None),
        (f"00-{'0' * 32}-{INCOMING_SPAN}-01", None),
        (f"00-{INCOMING_TRACE}-{'0' * 16}-01", None),
        (f"00-{INCOMING_TRACE[:-1]}-{INCOMING_SPAN}-01", None),
        ("", None),
        (None, None),
    ],
)
def test_it_reads_w3c_traceparent(header, expected):
    assert parse_traceparent(header) == expected


def test_it_injects_traceparent_into_outgoing_headers(recorder, make_tracer):
    tracer = make_tracer(recorder.url)
    assert inject({"accept": "json"}) == {"accept": "json"}  # outside any span
    with tracer.trace("call") as span:
        headers = tracer.inject({"accept": "json"})
        requests.get(recorder.url + "/by-hand", headers=headers, timeout=2)
    [call] = recorder.to("/by-hand")
    assert call["headers"]["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"
    assert parse_traceparent(call["headers"]["traceparent"]) == (
        span.trace_id,
        span.span_id,
    )


def test_it_propagates_through_every_requests_call_once_instrumented(
    recorder, make_tracer, instrumented
):
    tracer = make_tracer(recorder.url)
    session = requests.Session()
    with tracer.trace("handle") as outer:
        requests.get(recorder.url + "/plain", timeout=2)
        with tracer.trace("call") as inner:
            session.post(recorder.url + "/session", json={"x": 1}, timeout=2)
        requests.get(
            recorder.url + "/explicit", headers={"TraceParent": INCOMING}, timeout=2
        )
    requests.get(recorder.url + "/outside", timeout=2)
    tracing.uninstrument_requests()
    with tracer.trace("after"):
        requests.get(recorder.url + "/uninstrumented", timeout=2)
    tracer.flush()

    def sent(path: str) -> str | None:
        [request] = recorder.to(path)
        return request["headers"].get("traceparent")

    assert sent("/plain") == outer.traceparent
    assert sent("/session") == inner.traceparent
    assert sent("/explicit") == INCOMING  # the caller's own header wins
    assert sent("/outside") is None
    assert sent("/uninstrumented") is None
    # The tracer's own posts to the dashboard carry no traceparent.
    assert all("traceparent" not in r["headers"] for r in recorder.to("/api/traces"))


def test_it_sends_the_api_token(recorder, make_tracer, monkeypatch):
    tracer = make_tracer(recorder.url, api_token="s3cret")
    with tracer.trace("a"):
        pass
    tracer.flush()
    monkeypatch.setenv("SOLLOL_API_TOKEN", "from-env")
    from_env = make_tracer(recorder.url, headers={"X-App": "1"})
    with from_env.trace("b"):
        pass
    from_env.flush()
    first, second = recorder.to("/api/traces")
    assert first["headers"]["authorization"] == "Bearer s3cret"
    assert second["headers"]["authorization"] == "Bearer from-env"
    assert second["headers"]["x-app"] == "1"


def test_it_never_blocks_the_app_when_the_dashboard_is_away(make_tracer):
    tracer = make_tracer(f"http://127.0.0.1:{free_port()}", max_queue=100)
    started = time.monotonic()
    for i in range(1000):
        with tracer.trace(f"span {i}"):
            pass
    assert time.monotonic() - started < 2.0
    assert not tracer.flush(timeout=0.2)
    stats = tracer.stats
    assert stats["sent"] == 0
    assert stats["dropped"] >= 900 and stats["queued"] <= 100


def test_it_never_blocks_the_app_when_the_dashboard_hangs(make_tracer):
    # Accepts connections (the kernel does) and never answers: a send would
    # wait its whole 5 s timeout, so a span that waited for it would show.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        tracer = make_tracer(
            f"http://127.0.0.1:{silent.getsockname()[1]}", max_queue=100, timeout=5.0
        )
        started = time.monotonic()
        for i in range(300):
            with tracer.trace(f"span {i}"):
                pass
        assert time.monotonic() - started < 2.0
        assert tracer.stats["sent"] == 0
        tracer.close(timeout=0.2)


def test_it_imports_without_django_or_opentelemetry():
    script = (
        "import sys, sollol.tracing; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'django', 'opentelemetry', 'google'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_a_clients_trace_reaches_the_ollama_calls_it_makes(recorder):
    """ollama-python talks httpx: its calls inside client.trace() carry the span."""
    import httpx

    from sollol import DashboardClient

    client = DashboardClient(
        "Traced App", dashboard_url=recorder.url, auto_register=False
    )
    try:

        async def generate_async() -> None:
            async with httpx.AsyncClient() as http:
                await http.post(recorder.url + "/async/api/generate", json={})

        with client.trace("route") as span:
            httpx.post(recorder.url + "/api/generate", json={"model": "m"})
            requests.get(recorder.url + "/api/tags", timeout=2)
            asyncio.run(generate_async())
            httpx.get(recorder.url + "/explicit", headers={"TraceParent": INCOMING})
        httpx.get(recorder.url + "/outside")
    finally:
        client.close()
        tracing.uninstrument()

    def sent(path: str) -> str | None:
        [request] = recorder.to(path)
        return request["headers"].get("traceparent")

    for path in ("/api/generate", "/api/tags", "/async/api/generate"):
        assert sent(path) == span.traceparent, path
    assert sent("/explicit") == INCOMING
    assert sent("/outside") is None


def test_a_client_can_leave_the_http_libraries_alone(recorder):
    import httpx

    from sollol import DashboardClient

    client = DashboardClient(
        "Quiet App",
        dashboard_url=recorder.url,
        auto_register=False,
        propagate_traces=False,
    )
    try:
        with client.trace("route"):
            httpx.get(recorder.url + "/left-alone")
    finally:
        client.close()
    [request] = recorder.to("/left-alone")
    assert "traceparent" not in request["headers"]

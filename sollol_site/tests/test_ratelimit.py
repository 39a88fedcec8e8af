"""Writes are rate limited per client: 429 with Retry-After, reads never."""

from __future__ import annotations

import json

import pytest
from asgiref.testing import ApplicationCommunicator
from django.test import override_settings

from core.ratelimit import RateLimiter
from sollol_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_bucket_allows_the_burst_then_the_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [limiter.wait("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("a") == pytest.approx(0.5)  # one token back in 0.5 s
    assert limiter.wait("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a") > 0


def http_scope(
    method: str,
    path: str,
    client: str,
    headers: tuple = (),
    query: bytes = b"",
    host: bytes = b"127.0.0.1:8080",
) -> dict:
    """An ASGI HTTP scope as uvicorn would make it for client's request."""
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "scheme": "http",
        "headers": [(b"host", host), *headers],
        "client": (client, 50000),
        "server": ("127.0.0.1", 8080),
    }


async def exchange(scope: dict, body: bytes = b"", more_body: bool = False) -> tuple:
    """Send a request through the whole ASGI app; return status, headers, body."""
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input(
        {"type": "http.request", "body": body, "more_body": more_body}
    )
    start = await communicator.receive_output(10)
    content = await communicator.receive_output(10)
    await communicator.wait(10)
    return start["status"], dict(start["headers"]), content["body"]


async def call(
    method: str,
    path: str,
    client: str,
    body: bytes = b"",
    headers: tuple = (),
    query: bytes = b"",
    host: bytes = b"127.0.0.1:8080",
) -> tuple:
    """Send one JSON request through the ASGI app; return status, headers, JSON."""
    json_headers = ((b"content-type", b"application/json"), *headers)
    scope = http_scope(method, path, client, json_headers, query, host)
    status, answer_headers, content = await exchange(scope, body)
    return status, answer_headers, json.loads(content)


@override_settings(SOLLOL_WRITE_RATE=1.0, SOLLOL_WRITE_BURST=3.0)
async def test_a_client_writing_too_fast_gets_429_with_retry_after():
    register = json.dumps({"app_id": "a", "name": "A"}).encode()
    for _ in range(3):
        status, _, answer = await call(
            "POST", "/api/applications/register", "127.0.0.7", register
        )
        assert status == 200, answer
    # Both lanes share the limit: the lean heartbeat lane is refused too.
    status, headers, body = await call(
        "POST", "/api/applications/heartbeat", "127.0.0.7", register
    )
    assert status == 429
    assert headers[b"retry-after"] == b"1"
    assert "too many writes" in body["error"] and body["retry_after"] > 0
    # Reads are never limited; other clients are not affected.
    status, _, _ = await call("GET", "/api/applications", "127.0.0.7")
    assert status == 200
    status, _, _ = await call(
        "POST", "/api/applications/register", "127.0.0.8", register
    )
    assert status == 200


@override_settings(SOLLOL_WRITE_RATE=0)
async def test_a_rate_of_zero_turns_the_limit_off():
    for _ in range(50):
        status, _, _ = await call("POST", "/api/logs", "127.0.0.9", b"[]")
        assert status == 200


@override_settings(SOLLOL_APP_WRITE_RATE=1.0, SOLLOL_APP_WRITE_BURST=2.0)
async def test_one_app_in_a_loop_is_slowed_and_its_neighbours_are_not():
    """Limits follow the unit of abuse: the app, not the address it shares."""

    async def post(path: str, app_id: str) -> tuple:
        body = json.dumps({"app_id": app_id, "name": app_id}).encode()
        return await call("POST", path, "127.0.0.31", body)

    assert (await post("/api/applications/register", "looping"))[0] == 200
    assert (await post("/api/applications/heartbeat", "looping"))[0] == 200
    status, headers, answer = await post("/api/applications/heartbeat", "looping")
    assert status == 429 and headers[b"retry-after"] == b"1"
    assert "application looping" in answer["error"]
    status, headers, answer = await post("/api/applications/register", "looping")
    headers = {name.lower(): value for name, value in headers.items()}
    assert status == 429 and headers[b"retry-after"] == b"1"
    # Another app behind the same address writes on.
    assert (await post("/api/applications/register", "neighbour"))[0] == 200
    assert (await post("/api/applications/heartbeat", "neighbour"))[0] == 200


@override_settings(SOLLOL_NEW_APP_RATE=1.0, SOLLOL_NEW_APP_BURST=3.0)
async def test_a_flood_of_invented_app_ids_stops_at_the_new_app_limit():
    """Per address for ids it has not seen write: apps already writing go on."""

    async def post(path: str, app_id: str, client: str = "127.0.0.32") -> tuple:
        body = json.dumps({"app_id": app_id, "name": app_id}).encode()
        status, headers, answer = await call("POST", path, client, body)
        return status, {name.lower(): value for name, value in headers.items()}, answer

    for i in range(3):
        assert (await post("/api/applications/register", f"invented-{i}"))[0] == 200
    status, headers, answer = await post("/api/applications/register", "invented-3")
    assert status == 429 and headers[b"retry-after"] == b"1"
    assert "new application ids from 127.0.0.32" in answer["error"]
    assert "SOLLOL_NEW_APP_RATE" in answer["error"]
    # A heartbeat for an invented id is charged the same way.
    assert (await post("/api/applications/heartbeat", "invented-4"))[0] == 429
    # The apps it let in write on; another address registers its own.
    assert (await post("/api/applications/heartbeat", "invented-0"))[0] == 200
    assert (await post("/api/applications/register", "invented-1"))[0] == 200
    assert (await post("/api/applications/register", "other", "127.0.0.33"))[0] == 200
    # Refused ids were not let in: the first one is still new once a token refills.
    status, _, answer = await post("/api/applications/heartbeat", "invented-3")
    assert status == 429


@override_settings(SOLLOL_APP_REPORT_RATE=1.0, SOLLOL_APP_REPORT_BURST=2.0)
async def test_an_app_reporting_in_a_loop_is_slowed_on_every_lane_and_no_other():
    """Reports, log lines and spans are limited per application too: one app
    looping over single lines does not use up what its neighbours behind the
    same address may send."""

    async def post(path: str, body: dict, headers: tuple = ()) -> tuple:
        status, answered, answer = await call(
            "POST", path, "127.0.0.34", json.dumps(body).encode(), headers
        )
        return status, {k.lower(): v for k, v in answered.items()}, answer

    def line(app: str) -> dict:
        return {"app_id": app, "records": [{"level": "INFO", "message": "x"}]}

    def request(app: str) -> dict:
        return {"app_id": app, "node": "127.0.0.2:11434", "model": "m", "latency_ms": 5}

    def spans(service: str) -> dict:
        return {
            "service": service,
            "spans": [
                {
                    "trace_id": "1" * 32,
                    "span_id": "2" * 16,
                    "name": "chat",
                    "start": 1_700_000_000,
                    "end": 1_700_000_001,
                }
            ],
        }

    otlp = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "looping"}}
                    ]
                },
                "scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}]}],
            }
        ]
    }
    # The one budget of "looping" (a burst of two), whatever lane it writes on.
    assert (await post("/api/logs", line("looping")))[0] == 200
    assert (await post("/api/activity", request("looping")))[0] == 200
    for path, body in (
        ("/api/logs", line("looping")),
        ("/api/activity", request("looping")),
        ("/api/traces", spans("looping")),
        ("/v1/logs", otlp),
    ):
        status, headers, answer = await post(path, body)
        assert status == 429, (path, answer)
        assert headers[b"retry-after"] == b"1"
        assert "application looping" in answer["error"], answer
        assert "SOLLOL_APP_REPORT_RATE" in answer["error"], answer
    # Its neighbours report on.
    assert (await post("/api/logs", line("neighbour")))[0] == 200
    assert (await post("/api/activity", request("neighbour")))[0] == 200
    assert (await post("/api/traces", spans("another")))[0] == 200


@override_settings(
    SOLLOL_API_TOKENS=["first-token", "second-token"],
    SOLLOL_AUTH_FAILURE_RATE=1.0,
    SOLLOL_AUTH_FAILURE_BURST=2.0,
)
async def test_writes_without_a_valid_token_are_limited_per_address_and_no_others():
    async def post(path: str, token: str | None, client: str = "127.0.0.35") -> tuple:
        headers = (
            () if token is None else ((b"authorization", b"Bearer " + token.encode()),)
        )
        status, answered, answer = await call("POST", path, client, b"[]", headers)
        return status, {k.lower(): v for k, v in answered.items()}, answer

    assert (await post("/api/logs", "guessed"))[0] == 403
    assert (await post("/api/logs", None))[0] == 401
    for path in ("/api/logs", "/api/network/nodes", "/v1/logs"):
        status, headers, answer = await post(path, "guessed")
        assert status == 429, (path, answer)
        assert headers[b"retry-after"] == b"1"
        assert "without a valid token from 127.0.0.35" in answer["error"], answer
        assert "SOLLOL_AUTH_FAILURE_RATE" in answer["error"]
    # A client with a valid token behind the same address writes on; another
    # address is told what is wrong, not held.
    assert (await post("/api/logs", "first-token"))[0] == 200
    assert (await post("/api/logs", "guessed", "127.0.0.36"))[0] == 403


@override_settings(
    SOLLOL_API_TOKENS=["first-token", "second-token"],
    SOLLOL_WRITE_RATE=1.0,
    SOLLOL_WRITE_BURST=2.0,
)
async def test_with_tokens_the_flood_guard_is_per_token():
    async def post(token: str) -> int:
        headers = ((b"authorization", b"Bearer " + token.encode()),)
        return (await call("POST", "/api/logs", "127.0.0.37", b"[]", headers))[0]

    assert [await post("first-token") for _ in range(3)] == [200, 200, 429]
    # Another token's writers behind the same address have their own budget.
    assert [await post("second-token") for _ in range(2)] == [200, 200]
    # A made-up token does not get a bucket of its own: the address's.
    assert [await post(f"made-up-{i}") for i in range(3)][-1] == 429

"""Inputs that once gave a 500 (or an HTML page) now get a clear 4xx in JSON.

Each was found by throwing bad input at a running dashboard; each request goes
through the whole ASGI application, lean lane and Django lane alike.
"""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from sollol_site.tests.test_ratelimit import call, exchange, http_scope

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT = "127.0.0.9"
GIANT = "1" + "0" * 400  # valid JSON; no float holds it, float() raised OverflowError


async def post(path: str, body: str | bytes, **kwargs) -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    status, _, answer = await call("POST", path, CLIENT, data, **kwargs)
    return status, answer


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/activity", f'{{"node":"n","model":"m","latency_ms":{GIANT}}}'),
        (
            "/api/activity",
            f'{{"node":"n","model":"m","latency_ms":1,"timestamp":{GIANT}}}',
        ),
        ("/api/activity", '{"node":"n","model":"m","latency_ms":1e400}'),
        ("/api/logs", f'[{{"message":"x","timestamp":{GIANT}}}]'),
        ("/api/logs", '[{"message":"x","extra":{"v":1e400}}]'),
        (
            "/api/traces",
            f'[{{"trace_id":"{"a" * 32}","span_id":"{"b" * 16}","name":"s",'
            f'"start":{GIANT},"end":1}}]',
        ),
        ("/api/applications/register", f'{{"app_id":"a","name":"A","x":{GIANT}}}'),
        ("/api/applications/heartbeat", '{"app_id":"a","metadata":{"v":-1e400}}'),
    ],
)
async def test_numbers_no_float_or_int64_holds_are_refused(path, body):
    status, answer = await post(path, body)
    assert status == 400, answer
    assert "out of range" in answer["error"]


async def test_an_otlp_double_out_of_range_is_a_json_400():
    span = {
        "traceId": "a" * 32,
        "spanId": "b" * 16,
        "name": "s",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [{"key": "k", "value": {"doubleValue": 0}}],
    }
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).replace(
        '"doubleValue": 0', f'"doubleValue": {GIANT}'
    )
    status, answer = await post("/v1/traces", body)
    assert status == 400 and "out of range" in answer["error"]


async def test_latencies_past_a_week_are_refused_and_metrics_keep_answering():
    for _ in range(2):  # two of these once made every later /api/metrics a 500
        status, answer = await post(
            "/api/activity", '{"node":"n","model":"m","latency_ms":1.7e308}'
        )
        assert status == 400 and "latency_ms" in answer["error"]
    assert (await post("/api/activity", '{"node":"n","model":"m","latency_ms":5}'))[
        0
    ] == 200
    status, _, metrics = await call("GET", "/api/metrics", CLIENT)
    assert status == 200 and metrics["totals"]["requests"] == 1


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
)
async def test_log_timestamps_that_no_instant_matches_are_refused(stamp):
    status, answer = await post(
        "/api/logs", json.dumps([{"message": "x", "timestamp": stamp}])
    )
    assert status == 400 and "out of range" in answer["error"]


@pytest.mark.parametrize(
    ("path", "query", "word"),
    [
        ("/api/logs", b"level=%C2%B2", "level"),  # "²".isdigit() is true
        ("/api/logs", b"level=%E2%91%A0", "level"),  # "①" too
        ("/api/applications", b"offset=99999999999999999999", "offset"),
        ("/api/applications", b"router_type=%00", "NUL"),
        ("/api/traces", b"service=a%00b", "NUL"),
    ],
)
async def test_bad_query_parameters_are_a_400(path, query, word):
    status, _, answer = await call("GET", path, CLIENT, query=query)
    assert status == 400, answer
    assert word in answer["error"]


async def test_machine_paths_answer_errors_in_json():
    status, _, answer = await call("POST", "/api/prometheus", CLIENT)
    assert status == 405 and "not allowed" in answer["error"]  # not the CSRF page
    status, _, answer = await call("GET", "/v1/no-such-thing", CLIENT)
    assert status == 404 and answer == {"error": "no such endpoint"}
    status, _, answer = await call(
        "GET", "/api/applications", CLIENT, host=b"evil.example"
    )
    assert status == 400 and "Host" in answer["error"]


async def test_lean_answers_carry_the_security_headers():
    _, headers, _ = await call(
        "POST", "/api/applications/heartbeat", CLIENT, b'{"app_id":"nobody"}'
    )
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"referrer-policy"] == b"same-origin"


@pytest.mark.parametrize(
    "path", ["/api/applications/register", "/api/logs", "/api/network/nodes"]
)
async def test_another_site_cannot_write_through_the_operators_browser(path):
    """With no token set, a page elsewhere could POST text/plain here; not any more."""
    body = b'{"app_id":"evil","name":"Evil","url":"http://127.0.0.2:11434"}'
    if path == "/api/logs":
        body = b'[{"message":"evil"}]'
    for origin in (b"http://evil.example", b"null", b"http://127.0.0.1:9999"):
        status, answer = await post(path, body, headers=((b"origin", origin),))
        assert status == 403 and "cross-site" in answer["error"], (origin, answer)
    # The dashboard's own origin, and scripts that send none, still write.
    status, _ = await post(path, body, headers=((b"origin", b"http://127.0.0.1:8080"),))
    assert status in (200, 201), status
    status, _ = await post(path, body)
    assert status in (200, 201), status


@override_settings(SOLLOL_TRUSTED_ORIGINS=frozenset({"https://router.lan"}))
async def test_an_operator_can_trust_another_origin():
    status, _ = await post(
        "/api/logs",
        b'[{"message":"ok"}]',
        headers=((b"origin", b"https://router.lan"),),
    )
    assert status == 200


@pytest.mark.parametrize(
    ("path", "client"), [("/admin/login/", "127.0.0.11"), ("/login/", "127.0.0.12")]
)
@override_settings(SOLLOL_LOGIN_RATE=0.1, SOLLOL_LOGIN_BURST=3.0)
async def test_guessing_a_password_is_rate_limited(path, client):
    statuses = []
    for _ in range(5):
        status, headers, _ = await call_login(path, client)
        statuses.append(status)
    assert statuses[:3] != [429] * 3 and statuses[3:] == [429, 429], statuses
    assert int(headers[b"retry-after"]) >= 1


async def call_login(path: str, client: str) -> tuple:
    body = b"username=admin&password=guess"
    form = (
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"content-length", str(len(body)).encode()),
    )
    return await exchange(http_scope("POST", path, client, form), body)


@pytest.mark.parametrize(
    "path", ["/api/applications/heartbeat", "/api/applications/register"]
)
@override_settings(SOLLOL_BODY_TIMEOUT=0.3)
async def test_a_body_that_never_finishes_arriving_gets_408(path):
    """Both lanes: the lean one and Django's, whose body is read first too."""
    scope = http_scope("POST", path, CLIENT, ((b"content-length", b"100"),))
    status, _, body = await exchange(scope, b'{"app_id"', more_body=True)
    assert status == 408
    assert "did not arrive within 0.3 s" in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("host", "status"), [(b"localhost.", 200), (b"", 400), (b"evil.example", 400)]
)
async def test_both_lanes_judge_the_host_alike(host, status):
    beat, _, _ = await call(
        "POST", "/api/applications/heartbeat", CLIENT, b'{"app_id":"x"}', host=host
    )
    listing, _, _ = await call("GET", "/api/applications", CLIENT, host=host)
    assert beat == (404 if status == 200 else status)  # no app "x": 404, but served
    assert listing == status

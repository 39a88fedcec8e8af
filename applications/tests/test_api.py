from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import override_settings
from django.utils import timezone

from activity.models import Event
from applications.models import Application
from applications.tests.factories import register
from applications.tests.lean import is_lean, through_app

# Registrations are written by the lean lane's writer, from a thread of its own.
pytestmark = pytest.mark.django_db(transaction=True)

APP = {
    "app_id": "3f1c1a4e-1b2c-4d5e-8f90-123456789abc",
    "name": "My App",
    "router_type": "HybridRouter",
    "version": "1.0.0",
    "metadata": {"env": "prod"},
}


def post(client, path, body=None, raw=None, **headers):
    data = raw if raw is not None else json.dumps(body) if body is not None else ""
    if is_lean(path):  # served before Django: through the whole app
        return through_app("POST", path, data, **headers)
    return client.post(path, data=data, content_type="application/json", **headers)


def assert_refused(response, status=400):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert isinstance(response.json()["error"], str)


def test_it_registers_an_application_as_existing_clients_send_it(client):
    response = post(client, "/api/applications/register", APP)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["app_id"] == APP["app_id"]
    listed = client.get("/api/applications").json()
    assert listed["total"] == 1 and listed["active"] == 1
    [app] = listed["applications"]
    assert {k: app[k] for k in APP} == APP
    assert app["status"] == "active"
    for field in (
        "start_time",
        "last_heartbeat",
        "uptime_seconds",
        "last_seen_seconds",
    ):
        assert isinstance(app[field], float)


def test_it_makes_an_app_id_when_the_client_sends_none(client):
    body = {k: v for k, v in APP.items() if k != "app_id"}
    app_id = post(client, "/api/applications/register", body).json()["app_id"]
    assert Application.objects.get(pk=app_id).name == "My App"


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        "null",
        '{"name": 5}',
        '{"app_id": "x"}',
        '{"name": "   "}',
        '{"name": "A", "app_id": 17}',
        '{"name": "A", "app_id": "has space"}',
        '{"name": "A", "app_id": "' + "x" * 129 + '"}',
        '{"name": "A", "metadata": [1]}',
        '{"name": "A", "metadata": "x"}',
        '{"name": "A", "version": ["1"]}',
        '{"name": "A", "router_type": {"x": 1}}',
        '{"name": "A", "metadata": {"load": NaN}}',
        '{"name": "A\\u0000B"}',
        '{"name": "A", "metadata": {"k": "\\ud800"}}',
        '{"name": "' + "n" * 201 + '"}',
        '{"name": "A", "metadata": ' + '{"a": ' * 20 + "1" + "}" * 20 + "}",
        "[" * 100000 + "]" * 100000,
    ],
)
def test_it_refuses_a_malformed_registration_with_a_json_error(client, raw):
    assert_refused(post(client, "/api/applications/register", raw=raw))
    assert not Application.objects.exists()


@override_settings(SOLLOL_MAX_BODY_BYTES=1024)
def test_it_refuses_an_oversized_registration(client):
    body = {**APP, "metadata": {"blob": "x" * 2000}}
    assert_refused(post(client, "/api/applications/register", body), status=413)


def test_it_lists_applications_a_page_at_a_time(client):
    for i in range(25):
        register(f"app-{i:02}", name=f"App {i:02}")
    page = client.get("/api/applications?limit=10&offset=20").json()
    assert page["total"] == 25
    assert [a["app_id"] for a in page["applications"]] == [
        f"app-{i}" for i in range(20, 25)
    ]
    assert page["limit"] == 10 and page["offset"] == 20


def test_it_filters_applications_by_status(client):
    now = timezone.now()
    register("fresh", now=now)
    register("old", now=now - dt.timedelta(seconds=45))
    stale = client.get("/api/applications?status=stale").json()
    assert [a["app_id"] for a in stale["applications"]] == ["old"]
    assert stale["applications"][0]["status"] == "stale"
    active = client.get("/api/applications?status=active").json()
    assert [a["app_id"] for a in active["applications"]] == ["fresh"]


@pytest.mark.parametrize(
    "query", ["limit=abc", "limit=-1", "limit=100000", "offset=x", "status=zombie"]
)
def test_it_refuses_bad_list_parameters(client, query):
    assert_refused(client.get(f"/api/applications?{query}"))


def test_it_shows_one_application_or_a_json_404(client):
    register("app-1")
    assert client.get("/api/applications/app-1").json()["name"] == "My App"
    assert_refused(client.get("/api/applications/nope"), status=404)
    assert_refused(client.get("/api/no-such-endpoint"), status=404)


@pytest.mark.parametrize("app_id", ["plain", "with.dots_and~tilde-1", "UPPER"])
def test_it_unregisters_by_path_with_any_url_safe_id(client, app_id):
    register(app_id)
    response = post(client, f"/api/applications/{app_id}/unregister")
    assert response.status_code == 200
    assert not Application.objects.exists()
    assert Event.objects.last().type == "app_unregistered"


def test_it_unregisters_by_body_too(client):
    register("app-1")
    assert post(client, "/api/applications/unregister", {"app_id": "app-1"}).json() == {
        "status": "ok",
        "app_id": "app-1",
    }
    assert not Application.objects.exists()


def test_it_answers_404_for_unregistering_an_unknown_app(client):
    assert_refused(post(client, "/api/applications/ghost/unregister"), status=404)
    assert_refused(
        post(client, "/api/applications/unregister", {"app_id": "ghost"}), status=404
    )


@pytest.mark.parametrize("raw", ["", "[]", '{"id": "x"}', '{"app_id": 3}'])
def test_it_refuses_a_malformed_unregister(client, raw):
    assert_refused(post(client, "/api/applications/unregister", raw=raw))


def test_it_answers_wrong_methods_with_a_json_405(client):
    assert_refused(through_app("GET", "/api/applications/register"), status=405)
    assert_refused(client.delete("/api/applications"), status=405)


@override_settings(SOLLOL_API_TOKENS=["old-token", "new-token"])
def test_it_needs_a_token_for_writes_when_one_is_set(client):
    path = "/api/applications/register"
    assert_refused(post(client, path, APP), status=401)
    assert_refused(post(client, path, APP, HTTP_AUTHORIZATION="Bearer nope"), 403)
    assert_refused(post(client, path, APP, HTTP_AUTHORIZATION="Basic new-token"), 403)
    for token in ("old-token", "new-token"):
        ok = post(client, path, APP, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert ok.status_code == 200
    assert client.get("/api/applications").status_code == 200  # reads stay open

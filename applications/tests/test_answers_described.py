"""The applications API answers exactly what its OpenAPI schema describes
(strictly: no undescribed field, no missing one, no other type)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from applications.tests.factories import register, seconds
from applications.tests.test_api import APP, post
from tests.openapi import assert_described

pytestmark = pytest.mark.django_db(transaction=True)  # register: the lean writer


def test_lists_details_and_registrations_answer_as_described(client):
    made = post(client, "/api/applications/register", APP)
    assert made.json()["created"] is True
    assert_described("/api/applications/register", "POST", made.json())
    again = post(client, "/api/applications/register", APP)
    assert again.json()["created"] is False
    assert_described("/api/applications/register", "POST", again.json())
    now = timezone.now()
    register("old-app", now=now - seconds(3600), router_type=None)  # stale
    # Nothing but a name and an id: no router type, version or metadata.
    register("bare", now, name="Bare", router_type=None, version=None, metadata=None)

    for path in (
        "/api/applications",
        "/api/applications?availability=1h",
        "/api/applications?status=stale&availability=7d",
        "/api/applications?limit=1&offset=1",
        f"/api/applications/{APP['app_id']}",
        "/api/applications/old-app",
        "/api/applications/bare",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert_described(path, "GET", answer.json())
    listed = client.get("/api/applications?availability=1h").json()["applications"]
    assert {app["app_id"]: app["status"] for app in listed} == {
        APP["app_id"]: "active",
        "old-app": "stale",
        "bare": "active",
    }
    assert all(app["availability"] is not None for app in listed)

    by_body = post(client, "/api/applications/unregister", {"app_id": "bare"})
    assert_described("/api/applications/unregister", "POST", by_body.json())
    by_path = client.post("/api/applications/old-app/unregister")
    assert by_path.status_code == 200
    assert_described("/api/applications/old-app/unregister", "POST", by_path.json())

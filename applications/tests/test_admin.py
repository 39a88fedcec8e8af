from __future__ import annotations

import pytest
from django.utils import timezone

from applications import services
from applications.tests.factories import register

pytestmark = pytest.mark.django_db


def test_it_lists_and_filters_applications_in_the_admin(admin_client):
    register("app-1", now=timezone.now(), name="<img src=x onerror=alert(1)>")
    register("app-2", now=timezone.now(), name="Other", router_type="RayRouter")
    page = admin_client.get("/admin/applications/application/?router_type=RayRouter")
    assert page.status_code == 200
    assert b"Other" in page.content
    assert b"onerror" not in page.content
    found = admin_client.get("/admin/applications/application/?q=img")
    assert b"&lt;img src=x onerror=alert(1)&gt;" in found.content


def test_it_lists_events_by_stream_and_type_in_the_admin(admin_client):
    register("app-1", now=timezone.now())
    services.unregister_application("app-1", now=timezone.now())
    page = admin_client.get("/admin/activity/event/?type=app_unregistered")
    assert page.status_code == 200
    assert "Application stopped" in page.content.decode()
    assert "Application started" not in page.content.decode()

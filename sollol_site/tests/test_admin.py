"""The admin, for inspecting: what only ingest and probes write is read-only, and
removing a node, backend or application goes through the same services as the API."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from activity.models import Event, LogRecord, RequestRecord
from applications.models import Application
from network.choices import Source
from network.models import OllamaNode, ProbeCycle, Removed, RpcBackend
from network.services import lifecycle

pytestmark = pytest.mark.django_db

HOST = {"HTTP_HOST": "127.0.0.1"}


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(user)
    return client


def test_request_records_log_records_and_probe_rounds_are_shown_read_only(staff):
    now = timezone.now()
    RequestRecord.objects.create(
        timestamp=now, node="127.0.0.2:11434", model="m", latency_ms=5.0, ok=True
    )
    LogRecord.objects.create(
        timestamp=now, level="INFO", levelno=20, logger="app", message="<b>hi</b>"
    )
    ProbeCycle.objects.create(
        name="network", started_at=now, seconds=0.1, nodes=3, backends=1, changes=0
    )
    for model, shown in (
        ("activity/requestrecord", b"127.0.0.2:11434"),
        ("activity/logrecord", b"&lt;b&gt;hi&lt;/b&gt;"),
        ("network/probecycle", b"Last cycle"),
    ):
        listing = staff.get(f"/admin/{model}/", **HOST)
        assert listing.status_code == 200 and shown in listing.content
        assert staff.get(f"/admin/{model}/add/", **HOST).status_code == 403
    record = RequestRecord.objects.get()
    change = f"/admin/activity/requestrecord/{record.id}/change/"
    assert staff.post(change, {"model": "x"}, **HOST).status_code == 403
    assert RequestRecord.objects.get().model == "m"


def test_a_node_removed_in_the_admin_is_removed_as_the_api_does(staff):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.5:11434"], source=Source.API, now=timezone.now()
    )
    # Its status is what the probes say: not editable here, nor can one be added.
    page = staff.get(f"/admin/network/ollamanode/{node.id}/change/", **HOST)
    assert page.status_code == 200 and b'name="status"' not in page.content
    assert staff.get("/admin/network/ollamanode/add/", **HOST).status_code == 403
    gone = staff.post(
        f"/admin/network/ollamanode/{node.id}/delete/", {"post": "yes"}, **HOST
    )
    assert gone.status_code == 302
    assert not OllamaNode.objects.exists()
    assert Event.objects.filter(type="node_removed").count() == 1
    assert Removed.objects.filter(key="http://127.0.0.5:11434").exists()


@override_settings(SOLLOL_RPC_BACKENDS=["127.0.0.6:50052"])
def test_a_configured_backend_is_not_removed_and_the_admin_says_why(staff):
    lifecycle.ensure_backends(
        ["127.0.0.6:50052"], source=Source.CONFIG, now=timezone.now()
    )
    backend = RpcBackend.objects.get()
    answer = staff.post(
        f"/admin/network/rpcbackend/{backend.id}/delete/",
        {"post": "yes"},
        follow=True,
        **HOST,
    )
    assert answer.status_code == 200
    assert b"SOLLOL_RPC_BACKENDS" in answer.content
    assert RpcBackend.objects.filter(id=backend.id).exists()
    assert not Event.objects.filter(type="backend_disconnected").exists()


def test_an_application_removed_in_the_admin_is_unregistered(staff):
    now = timezone.now()
    Application.objects.create(
        app_id="app-9",
        name="Nine",
        start_time=now,
        last_heartbeat=now,
        stale_after=now + dt.timedelta(seconds=30),
        remove_after=now + dt.timedelta(hours=1),
    )
    page = staff.get("/admin/applications/application/app-9/change/", **HOST)
    assert page.status_code == 200 and b'name="status"' not in page.content
    staff.post("/admin/applications/application/app-9/delete/", {"post": "yes"}, **HOST)
    assert not Application.objects.exists()
    assert Event.objects.filter(type="app_unregistered").count() == 1

"""Applications name the nodes and backends they use; the network watches them."""

from __future__ import annotations

import datetime as dt

import pytest

from applications.api.serializers import AppReport
from applications.services import register_application
from network.models import OllamaNode, RpcBackend

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def test_it_watches_the_nodes_and_backends_applications_report(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        register_application(
            AppReport(
                app_id="router",
                name="Router",
                metadata={
                    "nodes": ["http://127.0.0.5:11434"],
                    "ollama_nodes": "127.0.0.6",
                    "rpc_backends": ["127.0.0.7:50052", 42],
                },
            ),
            now=T0,
        )
    assert set(OllamaNode.objects.values_list("url", "source")) == {
        ("http://127.0.0.5:11434", "application"),
        ("http://127.0.0.6:11434", "application"),
    }
    assert list(RpcBackend.objects.values_list("address", flat=True)) == [
        "127.0.0.7:50052"
    ]

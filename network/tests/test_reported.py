"""What routers report about a node meets what the network knows of it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from activity import metrics
from activity.models import Event
from network.probes import NodeProbe
from network.services import lifecycle, recording


def report(**fields) -> metrics.RequestReport:
    base = {"node": "127.0.0.2:11434", "model": "llama3.2:3b", "latency_ms": 100.0}
    return metrics.parse_activity({**base, **fields})[0]


@pytest.mark.django_db
def test_a_report_becomes_one_processing_event_per_node_and_model():
    now = timezone.now()
    [node] = lifecycle.ensure_nodes(["127.0.0.2:11434"], source="config", now=now)
    loaded = [{"name": "llama3.2:3b", "size": 3 * 2**30, "size_vram": 2576980378}]
    recording.record_node_probes(
        [
            (
                node.id,
                NodeProbe(ok=True, answered=True, latency_ms=1.0, loaded_models=loaded),
            )
        ],
        now=now,
    )
    metrics.record_requests([report(app_id="a"), report(ok=False, app_id="b")], now=now)
    [event] = Event.objects.filter(type="model_processing")
    message = event.as_message()
    assert message["node"] == "127.0.0.2:11434"
    assert message["model"] == "llama3.2:3b"
    assert message["vram_gb"] == 2.4
    assert message["requests"] == 2 and message["errors"] == 1
    assert message["app_ids"] == ["a", "b"]
    assert message["message"].startswith(
        "🔄 Processing on 127.0.0.2:11434: llama3.2:3b (VRAM: 2.40GB; 2 requests"
    )

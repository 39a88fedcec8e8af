"""Operator labels on nodes and RPC backends: through the API, from
SOLLOL_NODE_LABELS, and as the alerting engine reads them (issue 14)."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activity.alerting import Check, labels_of
from network.choices import Source
from network.models import OllamaNode, RpcBackend
from network.services import lifecycle
from network.tests.test_api import post
from tests.openapi import assert_described

pytestmark = pytest.mark.django_db

NO_CONFIG = {
    "SOLLOL_OLLAMA_NODES": [],
    "SOLLOL_NODES": [],
    "SOLLOL_RPC_BACKENDS": [],
    "SOLLOL_GPU_EXPORTERS": [],
    "SOLLOL_DISCOVER_LOCALHOST": False,
}


def patch(client, path, body, **headers):
    return client.patch(
        path, json.dumps(body), content_type="application/json", **headers
    )


def test_a_node_is_added_labelled_and_its_labels_are_replaced(client):
    made = post(
        client,
        "/api/network/nodes",
        {"url": "http://127.0.0.2:11434", "labels": {"rack": "a", "gpu": "a100"}},
    )
    assert made.status_code == 201
    assert_described("/api/network/nodes", "POST", made.json(), 201)
    node_id = made.json()["node"]["id"]
    assert made.json()["node"]["labels"] == {"rack": "a", "gpu": "a100"}

    # Given again, they replace the known node's; left out, they are kept.
    again = post(
        client,
        "/api/network/nodes",
        {"url": "http://127.0.0.2:11434", "labels": {"rack": "b"}},
    )
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["node"]["labels"] == {"rack": "b"}
    kept = post(client, "/api/network/nodes", {"url": "http://127.0.0.2:11434"})
    assert kept.json()["node"]["labels"] == {"rack": "b"}
    assert OllamaNode.objects.get(pk=node_id).labels == {"rack": "b"}

    changed = patch(
        client, f"/api/network/nodes/{node_id}", {"labels": {"env": "prod"}}
    )
    assert changed.status_code == 200
    assert_described(f"/api/network/nodes/{node_id}", "PATCH", changed.json())
    assert changed.json()["labels"] == {"env": "prod"}
    assert changed.json()["history"] == [] and "rpc_backends" in changed.json()
    assert patch(client, f"/api/network/nodes/{node_id}", {}).json()["labels"] == {
        "env": "prod"
    }

    # Every answer that shows the node shows its labels: the list (built by hand,
    # as text), a page of it, and the detail.
    for path in ("/api/network/nodes", "/api/network/nodes?limit=1&offset=0"):
        listed = client.get(path).json()
        assert_described(path, "GET", listed)
        assert listed["nodes"][0]["labels"] == {"env": "prod"}
    detail = client.get(f"/api/network/nodes/{node_id}").json()
    assert detail["labels"] == {"env": "prod"}

    cleared = patch(client, f"/api/network/nodes/{node_id}", {"labels": {}})
    assert cleared.json()["labels"] == {}
    assert client.get("/api/network/nodes").json()["nodes"][0]["labels"] == {}


def test_a_backend_is_added_labelled_and_its_labels_are_replaced(client):
    made = post(
        client,
        "/api/network/backends",
        {"address": "127.0.0.2:50052", "labels": {"rack": "a"}},
    )
    assert made.status_code == 201
    assert_described("/api/network/backends", "POST", made.json(), 201)
    assert made.json()["backend"]["labels"] == {"rack": "a"}
    backend_id = made.json()["backend"]["id"]
    again = post(
        client,
        "/api/network/backends",
        {"address": "127.0.0.2:50052", "labels": {"rack": "b", "gpu": "cpu"}},
    )
    assert again.status_code == 200
    assert again.json()["backend"]["labels"] == {"rack": "b", "gpu": "cpu"}

    changed = patch(
        client, f"/api/network/backends/{backend_id}", {"labels": {"rack": "c"}}
    )
    assert changed.status_code == 200
    assert_described(f"/api/network/backends/{backend_id}", "PATCH", changed.json())
    assert changed.json()["labels"] == {"rack": "c"}
    assert RpcBackend.objects.get(pk=backend_id).labels == {"rack": "c"}
    for path in ("/api/network/backends", f"/api/network/backends/{backend_id}"):
        answer = client.get(path).json()
        assert_described(path, "GET", answer)
    assert client.get("/api/network/backends").json()["backends"][0]["labels"] == {
        "rack": "c"
    }


BAD_LABELS = [
    ("rack=a", "must be an object"),
    (["rack", "a"], "must be an object"),
    ({"1abc": "x"}, "'1abc' is not a label name"),
    ({"a-b": "x"}, "'a-b' is not a label name"),
    ({"rack": 5}, "labels.rack must be a string"),
    ({"rack": None}, "labels.rack must be a string"),
    ({"rack": "x" * 201}, "labels.rack is longer than 200"),
    ({f"l{n}": "x" for n in range(33)}, "at most 32 labels"),
]


@pytest.mark.parametrize(("given", "said"), BAD_LABELS)
def test_bad_labels_are_refused_with_a_json_400_naming_the_field(client, given, said):
    node = post(client, "/api/network/nodes", {"url": "127.0.0.2", "labels": given})
    backend = post(
        client, "/api/network/backends", {"address": "127.0.0.2", "labels": given}
    )
    for refused in (node, backend):
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("labels")
        assert said in refused.json()["error"]
    # Refused before anything was added.
    assert not OllamaNode.objects.exists() and not RpcBackend.objects.exists()

    [made] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.API, now=timezone.now()
    )
    [made_backend] = lifecycle.ensure_backends(
        ["127.0.0.2"], source=Source.API, now=timezone.now()
    )
    for path in (
        f"/api/network/nodes/{made.id}",
        f"/api/network/backends/{made_backend.id}",
    ):
        refused = patch(client, path, {"labels": given})
        assert refused.status_code == 400
        assert said in refused.json()["error"]
    assert OllamaNode.objects.get().labels == {} == RpcBackend.objects.get().labels


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ([{"rack": "a"}], "the body must be"),
        ({"labels": {"rack": "a"}, "url": "http://x"}, "'url' cannot be changed"),
        ({"label": {"rack": "a"}}, "'label' cannot be changed"),
    ],
)
def test_a_patch_takes_only_labels(client, body, said):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.API, now=timezone.now()
    )
    refused = patch(client, f"/api/network/nodes/{node.id}", body)
    assert refused.status_code == 400 and said in refused.json()["error"]
    assert OllamaNode.objects.get().labels == {}


def test_a_patch_of_an_unknown_id_is_a_404(client):
    for path, what in (
        ("/api/network/nodes/999", "no node with id 999"),
        ("/api/network/backends/999", "no RPC backend with id 999"),
    ):
        missing = patch(client, path, {"labels": {"rack": "a"}})
        assert missing.status_code == 404
        assert missing.json()["error"] == what


@override_settings(SOLLOL_API_TOKENS=["t"])
def test_changing_labels_needs_the_write_token(client):
    [node] = lifecycle.ensure_nodes(
        ["127.0.0.2"], source=Source.API, now=timezone.now()
    )
    path = f"/api/network/nodes/{node.id}"
    assert patch(client, path, {"labels": {"rack": "a"}}).status_code == 401
    assert OllamaNode.objects.get().labels == {}
    ok = patch(client, path, {"labels": {"rack": "a"}}, HTTP_AUTHORIZATION="Bearer t")
    assert ok.status_code == 200 and ok.json()["labels"] == {"rack": "a"}


def _sync() -> None:
    lifecycle.sync_configured(now=timezone.now())


def _labels() -> dict[str, dict[str, str]]:
    found = {node.address: node.labels for node in OllamaNode.objects.all()}
    found |= {f"backend {b.address}": b.labels for b in RpcBackend.objects.all()}
    return found


@override_settings(
    **{
        **NO_CONFIG,
        "SOLLOL_OLLAMA_NODES": ["127.0.0.2"],
        "SOLLOL_NODE_LABELS": [
            "127.0.0.2:11434=rack=a;gpu=a100",
            "127.0.0.3:*=rack=b;zone=one",
            "127.0.0.3:50052=zone=two",  # later: wins over the one before
            "[::1]:*=rack=v6",
            "GPU-BOX.local:*=rack=named",
        ],
    }
)
def test_configured_labels_are_merged_over_every_nodes_and_backends_own():
    now = timezone.now()
    lifecycle.ensure_nodes(
        ["http://127.0.0.3:11434"], source=Source.APPLICATION, now=now
    )
    lifecycle.add_node("127.0.0.3:8080", now=now, labels={"rack": "x", "team": "t"})
    lifecycle.ensure_nodes(["http://[::1]:11434"], source=Source.SCAN, now=now)
    lifecycle.ensure_nodes(["http://gpu-box.local:11434"], source=Source.API, now=now)
    lifecycle.ensure_nodes(["http://127.0.0.4:11434"], source=Source.API, now=now)
    lifecycle.ensure_backends(["127.0.0.3:50052"], source=Source.API, now=now)
    # Labelled before the configuration is applied, by the API alone:
    OllamaNode.objects.filter(port=8080).update(labels={"rack": "x", "team": "t"})
    _sync()
    assert _labels() == {
        "127.0.0.2:11434": {"rack": "a", "gpu": "a100"},  # configured itself
        "127.0.0.3:11434": {"rack": "b", "zone": "one"},  # reported by an app
        "127.0.0.3:8080": {"rack": "b", "zone": "one", "team": "t"},  # config wins
        "[::1]:11434": {"rack": "v6"},  # brackets of an IPv6 host are no glob set
        "gpu-box.local:11434": {"rack": "named"},  # host names in any case
        "127.0.0.4:11434": {},  # matched by none
        "backend 127.0.0.3:50052": {"rack": "b", "zone": "two"},
    }

    # Through the API the keys the configuration gives stay the configuration's.
    node = OllamaNode.objects.get(port=8080)
    lifecycle.set_labels(OllamaNode, node.id, {"rack": "z", "env": "dev"})
    assert OllamaNode.objects.get(pk=node.id).labels == {
        "rack": "b",
        "zone": "one",
        "env": "dev",
    }
    made, created = lifecycle.add_node("127.0.0.3:9000", now=now)
    assert created and made.labels == {"rack": "b", "zone": "one"}


@override_settings(
    **{
        **NO_CONFIG,
        "SOLLOL_OLLAMA_NODES": ["127.0.0.2", "127.0.0.3"],
        "SOLLOL_RPC_BACKENDS": ["127.0.0.2:50052"],
        "SOLLOL_NODE_LABELS": ["127.0.0.2:*=rack=a", "127.0.0.3:*=rack=b"],
    }
)
def test_a_sync_that_changes_no_labels_writes_none():
    def writes(queries) -> list[str]:
        """The UPDATEs of nodes and backends (executemany's are logged as
        `n times: UPDATE ...`)."""
        return [
            q["sql"]
            for q in queries
            if 'UPDATE "network_ollamanode"' in q["sql"]
            or 'UPDATE "network_rpcbackend"' in q["sql"]
        ]

    with CaptureQueriesContext(connection) as first:
        _sync()
    # Both nodes in one statement, the backend (127.0.0.2:*) in another.
    assert [sql.split(" SET ")[0] for sql in writes(first.captured_queries)] == [
        '2 times: UPDATE "network_ollamanode"',
        '1 times: UPDATE "network_rpcbackend"',
    ]
    assert OllamaNode.objects.get(host="127.0.0.2").labels == {"rack": "a"}
    assert RpcBackend.objects.get().labels == {"rack": "a"}
    with CaptureQueriesContext(connection) as second:
        _sync()
    assert writes(second.captured_queries) == []
    # One of them changed by hand: only it is written back.
    OllamaNode.objects.filter(host="127.0.0.3").update(labels={})
    with CaptureQueriesContext(connection) as third:
        _sync()
    [written] = writes(third.captured_queries)
    assert written.startswith('1 times: UPDATE "network_ollamanode" SET "labels"')
    assert OllamaNode.objects.get(host="127.0.0.3").labels == {"rack": "b"}


@override_settings(
    **{
        **NO_CONFIG,
        "SOLLOL_OLLAMA_NODES": ["127.0.0.2"],
        "SOLLOL_NODE_LABELS": [
            "nonsense",
            "127.0.0.2:*=1abc=x",
            "127.0.0.2:*=rack",
            "127.0.0.2:*=rack=a",
        ],
    }
)
def test_a_bad_configured_entry_is_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="network.services.lifecycle"):
        _sync()
    assert OllamaNode.objects.get().labels == {"rack": "a"}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3
    assert "'nonsense' is not <host:port>=<name>=<value>" in warned[0]
    assert "'1abc' is not a label name" in warned[1]
    assert "'rack' in '127.0.0.2:*' is not <name>=<value>" in warned[2]
    assert all("SOLLOL_NODE_LABELS" in line for line in warned)


def test_the_labellers_name_labelled_nodes_and_backends_as_findings_do():
    now = timezone.now()
    lifecycle.add_node("127.0.0.2", now=now, labels={"rack": "a"})
    lifecycle.add_node("127.0.0.3", now=now)
    lifecycle.add_backend("127.0.0.2:50052", now=now, labels={"gpu": "cpu"})
    lifecycle.add_backend("127.0.0.3:50052", now=now)
    check = Check(threshold=None, window=dt.timedelta(minutes=5), now=now)
    assert labels_of("node", check) == {"127.0.0.2:11434": {"rack": "a"}}
    assert labels_of("backend", check) == {"127.0.0.2:50052": {"gpu": "cpu"}}

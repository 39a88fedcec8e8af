"""Long lists page one way: ?limit=&offset= with the total (nodes, backends,
applications, traces), or by id with the total (events, logs)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from activity import services as activity
from network.choices import NODE_STREAM, Source
from network.services import lifecycle

pytestmark = pytest.mark.django_db


def walk(client, path: str, key: str, size: int) -> list:
    """Read every page of path; return the items in the order given."""
    items, offset = [], 0
    while True:
        body = client.get(f"{path}?limit={size}&offset={offset}").json()
        assert body["limit"] == size and body["offset"] == offset
        items += body[key]
        offset += len(body[key])
        if not body[key]:
            assert offset == body["total"]
            return items


@pytest.mark.parametrize(
    ("path", "key", "make"),
    [
        (
            "/api/network/nodes",
            "nodes",
            lambda n: lifecycle.ensure_nodes(
                [f"127.0.1.{i}" for i in range(1, n + 1)],
                source=Source.CONFIG,
                now=timezone.now(),
            ),
        ),
        (
            "/api/network/backends",
            "backends",
            lambda n: [
                lifecycle.add_backend(f"127.0.2.{i}:50052", now=timezone.now())
                for i in range(1, n + 1)
            ],
        ),
    ],
)
def test_a_list_is_read_in_pages_each_item_once(client, path, key, make):
    make(23)
    first = client.get(path).json()
    assert first["total"] == 23 and first["offset"] == 0 and first["limit"] == 100
    everything = walk(client, path, key, size=5)
    assert [item["id"] for item in everything] == [item["id"] for item in first[key]]
    assert len({item["id"] for item in everything}) == 23
    short = client.get(f"{path}?limit=5&offset=20").json()
    assert len(short[key]) == 3 and short["total"] == 23


@pytest.mark.parametrize(
    "query", ["limit=-1", "limit=1001", "limit=x", "offset=-1", "offset=1e3"]
)
@pytest.mark.parametrize(
    "path", ["/api/network/nodes", "/api/network/backends", "/api/applications"]
)
def test_a_bad_page_is_a_400_naming_the_parameter(client, path, query):
    answer = client.get(f"{path}?{query}")
    assert answer.status_code == 400
    assert query.split("=")[0] in answer.json()["error"]


def test_events_page_by_id_newest_first_or_after_a_cursor(client):
    activity.record_events(
        [
            activity.NewEvent(NODE_STREAM, "node_discovered", f"node {i}")
            for i in range(12)
        ],
        now=timezone.now(),
    )
    newest = client.get("/api/events?limit=5").json()
    ids = [e["id"] for e in newest["events"]]
    assert len(ids) == 5 and ids == sorted(ids) and newest["total"] >= 12
    older = client.get(f"/api/events?limit=5&before={ids[0]}").json()
    assert [e["id"] for e in older["events"]][-1] < ids[0]
    after = client.get(
        f"/api/events?since={older['events'][0]['id']}&limit=1000"
    ).json()
    assert [e["id"] for e in after["events"]][-5:] == ids
    assert {e["stream"] for e in after["events"]} == {"nodes"}
    typed = client.get("/api/events?stream=nodes&type=node_discovered").json()
    assert typed["total"] == 12
    assert client.get("/api/events?stream=nope").status_code == 400
    assert client.get("/api/events?since=1&before=2").status_code == 400
    assert client.get("/api/logs?since=1&before=2").status_code == 400

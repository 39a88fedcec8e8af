"""One node per host:port, by the database: a second row for an address already
stored is refused whatever its scheme, and an add that loses the race to another
stores nothing and says it made nothing."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from network.choices import Source
from network.models import OllamaNode
from network.services import lifecycle

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_database_refuses_a_second_node_at_one_address():
    now = timezone.now()
    lifecycle.ensure_nodes(["http://127.0.0.2:11434"], source=Source.CONFIG, now=now)
    with pytest.raises(IntegrityError), transaction.atomic():
        OllamaNode.objects.create(
            url="https://127.0.0.2:11434",
            host="127.0.0.2",
            port=11434,
            source=Source.API,
            created_at=now,
        )
    assert OllamaNode.objects.count() == 1


def test_an_add_that_loses_the_race_stores_nothing(monkeypatch):
    """Another process stores the address between this add's check and insert."""
    now = timezone.now()
    insert = OllamaNode.objects.bulk_create

    def rival_first(rows, **options):
        OllamaNode.objects.create(
            url="http://127.0.0.3:11434",
            host="127.0.0.3",
            port=11434,
            source=Source.APPLICATION,
            created_at=now,
        )
        return insert(rows, **options)

    monkeypatch.setattr(OllamaNode.objects, "bulk_create", rival_first)
    node, created = lifecycle.add_node("https://127.0.0.3:11434", now=now)
    assert created is False
    assert node.url == "http://127.0.0.3:11434"
    assert OllamaNode.objects.filter(host="127.0.0.3").count() == 1

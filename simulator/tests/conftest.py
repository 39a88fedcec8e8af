"""Fixtures of the simulator's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.ollama import SimulatedNode, running_fleet
from simulator.tests.clients import CHAT, EMBED


@pytest.fixture
def node() -> Iterator[SimulatedNode]:
    """One node on its own loop and thread, with a chat and an embedding model."""
    with running_fleet(1, base="127.0.0.70", port=0) as fleet:
        node = fleet[0]
        node.pull(CHAT)
        node.pull(EMBED)
        yield node

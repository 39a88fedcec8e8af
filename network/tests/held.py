"""What a user sees of an RPC backend held by a client, let go, then killed.

The same story is told against the simulator (network/tests/test_cycle.py) and the
real ggml-rpc-server (tests/test_rpc_real.py); both must end alike.
"""

from __future__ import annotations

from activity.models import Event


def assert_busy_while_held_then_online_then_offline(seen: list[str]) -> None:
    """seen: the status after each of 6 held cycles, one let go, one killed."""
    assert seen == ["busy"] * 6 + ["online", "offline"]
    events = Event.objects.filter(stream="backends").order_by("id")
    assert [(e.type, e.payload["new_status"]) for e in events] == [
        ("backend_connected", "online"),
        ("status_change", "busy"),
        ("status_change", "online"),
        ("backend_disconnected", "offline"),
    ]
    assert "serving another client" in events[1].payload["reason"]

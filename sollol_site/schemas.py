"""What GET /api/network/health answers, described for the OpenAPI schema.

This serializer describes; it does not serialize. The answer is
network.health.network_health joined with the applications' count
(sollol_site.health), and a test checks it against this description strictly
(tests/openapi.py).
"""

from __future__ import annotations

from rest_framework import serializers

# network.health.network_health's verdicts, worst first.
HEALTH_STATUSES = [
    ("critical", "nodes are known and none is usable (or no RPC backend is)"),
    ("degraded", "a node or backend is down, degraded, flapping or refusing"),
    ("unknown", "nothing is known, or nothing has been probed yet"),
    ("healthy", "usable, and nothing of the above"),
]


class MissedSerializer(serializers.Serializer):
    round = serializers.IntegerField(help_text="the last finished round")
    count = serializers.IntegerField(
        help_text="nodes and backends it left unprobed (probed a round later)"
    )


class ProbeCycleSerializer(serializers.Serializer):
    started_at = serializers.FloatField(help_text="epoch seconds")
    seconds = serializers.FloatField(help_text="how long it took")
    nodes = serializers.IntegerField(help_text="probed")
    backends = serializers.IntegerField(help_text="probed")
    changes = serializers.IntegerField(help_text="status changes it made")
    round = serializers.IntegerField(
        allow_null=True, help_text="sharded probing: the round these totals are for"
    )
    missed = MissedSerializer(
        allow_null=True, help_text="sharded, from the second round on"
    )


class HealthSerializer(serializers.Serializer):
    timestamp = serializers.FloatField(help_text="epoch seconds")
    status = serializers.ChoiceField(HEALTH_STATUSES)
    reason = serializers.CharField(help_text="the reasons, joined with '; '")
    reasons = serializers.ListField(child=serializers.CharField())
    notes = serializers.ListField(
        child=serializers.CharField(),
        help_text="not the fleet's health, but worth an operator's attention",
    )
    nodes_total = serializers.IntegerField()
    nodes_healthy = serializers.IntegerField()
    nodes_degraded = serializers.IntegerField()
    nodes_down = serializers.IntegerField(help_text="unhealthy or offline")
    nodes_rejected = serializers.IntegerField(
        help_text="outside SOLLOL_ALLOWED_NODE_CIDRS: not contacted"
    )
    nodes_flapping = serializers.IntegerField()
    nodes_unauthorized = serializers.IntegerField(help_text="HTTP 401/403")
    nodes_not_found = serializers.IntegerField()
    backends_total = serializers.IntegerField()
    backends_online = serializers.IntegerField()
    backends_busy = serializers.IntegerField()
    backends_offline = serializers.IntegerField()
    backends_rejected = serializers.IntegerField()
    probe_cycle = ProbeCycleSerializer(
        allow_null=True, help_text="the last cycle's figures; null: none yet"
    )
    applications_active = serializers.IntegerField(
        help_text="applications heard from within their deadline"
    )

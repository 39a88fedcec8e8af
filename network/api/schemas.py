"""What the network API answers, described for the OpenAPI schema.

These serializers describe; they do not serialize. The answers are built by
network.api.serializers (by hand, fast for 1,000 nodes), and tests check each
answer against these descriptions strictly (tests/openapi.py), so the two cannot
drift apart unnoticed. So are the bodies the writes take (checked by hand in
network.api.views and core.labels). Data a node itself defines (its model lists,
a server's gauges, a GPU exporter's readings) is an open object.
"""

from __future__ import annotations

from rest_framework import serializers

from core import labels
from core.schema import PageSerializer, label_map
from network.choices import BackendStatus, NodeStatus

OPEN = serializers.DictField  # an object whose keys the node or exporter decides
LABELS = (
    "the operator's {name: value} (names: letters, digits and _, not starting "
    "with a digit), that alert rules and silences are scoped by"
)


class NodeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    kind = serializers.CharField(help_text="ollama, llamacpp, vllm, openai, ...")
    address = serializers.CharField(help_text="host:port")
    status = serializers.ChoiceField(NodeStatus.choices)
    source = serializers.CharField(help_text="config, localhost, reported, api, scan")
    credential = serializers.CharField(
        allow_null=True, help_text='which credential its probes send ("bearer ***")'
    )
    version = serializers.CharField()
    latency_ms = serializers.FloatField(allow_null=True)
    latency_avg_ms = serializers.FloatField(allow_null=True)
    usable = serializers.BooleanField(help_text="answered its last probe: takes work")
    loaded_models_known = serializers.BooleanField()
    vram_used_bytes = serializers.IntegerField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    last_error = serializers.CharField()
    last_seen = serializers.FloatField(allow_null=True, help_text="epoch seconds")
    last_probe = serializers.FloatField(allow_null=True, help_text="epoch seconds")
    in_flight = serializers.IntegerField(help_text="gateway requests being answered")
    queued = serializers.IntegerField(help_text="gateway requests waiting for a slot")
    serving = OPEN(
        allow_null=True,
        help_text="a server other than Ollama: slots, requests running and "
        "waiting, KV-cache use, tokens/s, as it says",
    )
    gpus = serializers.ListField(child=OPEN(), help_text="as its GPU exporter reads")
    labels = label_map(LABELS)
    models = serializers.ListField(child=OPEN(), help_text="on disk, as /api/tags")
    loaded_models = serializers.ListField(child=OPEN(), help_text="in memory, /api/ps")


class StatusChangeSerializer(serializers.Serializer):
    at = serializers.FloatField()
    old_status = serializers.CharField()
    new_status = serializers.CharField()
    reason = serializers.CharField()


class NodeDetailSerializer(NodeSerializer):
    history = StatusChangeSerializer(many=True, help_text="newest first")
    rpc_backends = serializers.ListField(
        child=serializers.CharField(), help_text="a llama.cpp coordinator's backends"
    )


class NodeListSerializer(PageSerializer):
    nodes = NodeSerializer(many=True)


class BackendSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    address = serializers.CharField()
    host = serializers.CharField()
    port = serializers.IntegerField()
    status = serializers.ChoiceField(BackendStatus.choices)
    usable = serializers.BooleanField()
    source = serializers.CharField()
    protocol = serializers.CharField(help_text="the ggml RPC protocol version")
    device_count = serializers.IntegerField()
    devices = serializers.ListField(child=OPEN(), help_text="name, memory free/total")
    latency_ms = serializers.FloatField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    last_error = serializers.CharField()
    last_seen = serializers.FloatField(allow_null=True)
    last_probe = serializers.FloatField(allow_null=True)
    coordinator = serializers.CharField(help_text='host:port, or ""')
    coordinator_source = serializers.CharField(help_text='declared, inferred or ""')
    labels = label_map(LABELS)


class BackendListSerializer(PageSerializer):
    backends = BackendSerializer(many=True)


class NodeAddedSerializer(serializers.Serializer):
    status = serializers.CharField()
    created = serializers.BooleanField()
    node = NodeSerializer()


class BackendAddedSerializer(serializers.Serializer):
    status = serializers.CharField()
    created = serializers.BooleanField()
    backend = BackendSerializer()


GIVEN_LABELS = (
    f"{LABELS}; at most {labels.MOST}. They replace its labels; the keys "
    "SOLLOL_NODE_LABELS gives for its address win over them"
)


class NodeAddSerializer(serializers.Serializer):
    url = serializers.CharField(
        help_text="http://host:port, or kind+http://host:port (llamacpp+, vllm+, ...)"
    )
    labels = label_map(GIVEN_LABELS + "; none: a known node keeps its", required=False)


class BackendAddSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="host:port")
    labels = label_map(
        GIVEN_LABELS + "; none: a known backend keeps its", required=False
    )


class LabelsChangeSerializer(serializers.Serializer):
    """What a PATCH of a node or backend changes: its labels, and nothing else
    (another field is refused)."""

    labels = label_map(GIVEN_LABELS + "; none: kept")


class RemovedSerializer(serializers.Serializer):
    status = serializers.CharField()
    id = serializers.IntegerField()


class NodeAvailabilitySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    availability = serializers.FloatField(
        allow_null=True, help_text="share usable; null: never measured in the window"
    )
    measurements = serializers.IntegerField()


class BackendAvailabilitySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    address = serializers.CharField()
    availability = serializers.FloatField(allow_null=True)
    measurements = serializers.IntegerField()


class AvailabilitySerializer(serializers.Serializer):
    window = serializers.FloatField(help_text="seconds")
    since = serializers.FloatField(help_text="epoch seconds")
    nodes = NodeAvailabilitySerializer(many=True, help_text="least available first")
    backends = BackendAvailabilitySerializer(many=True)

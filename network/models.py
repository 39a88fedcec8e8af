from __future__ import annotations

from django.db import models
from django.db.models import Q

from core.addresses import host_port
from network.choices import BackendStatus, NodeKind, NodeStatus, Source


class ProbedTarget(models.Model):
    """What the dashboard keeps of all it probes: where, whence, how it answered."""

    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    source = models.CharField(max_length=16, choices=Source.choices)
    latency_ms = models.FloatField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_probe = models.DateTimeField(null=True, blank=True)
    # The last sharded probe round that recorded it (network/tasks.py): a batch
    # delivered again after a worker died skips what was already probed.
    probe_round = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField()
    # The operator's {name: value} (core.labels), that alert rules and silences are
    # scoped by: set through the API, and SOLLOL_NODE_LABELS merged over at sync.
    labels = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True


def labelled_index(name: str) -> models.Index:
    """The few labelled rows, read every alert round (a scan of the whole table
    was most of that read on PostgreSQL)."""
    return models.Index(fields=["id"], condition=~Q(labels={}), name=name)


class OllamaNode(ProbedTarget):
    """An inference server the dashboard probes over its HTTP API: Ollama's, or
    another kind's (llama.cpp's llama-server, vLLM, ... : `kind`)."""

    url = models.CharField(max_length=300, unique=True)  # http://host:port
    kind = models.CharField(
        max_length=16, choices=NodeKind.choices, default=NodeKind.OLLAMA
    )
    status = models.CharField(
        max_length=16, choices=NodeStatus.choices, default=NodeStatus.UNKNOWN
    )
    version = models.CharField(max_length=64, blank=True)
    latency_avg_ms = models.FloatField(null=True, blank=True)
    disk_models = models.JSONField(default=list, blank=True)  # from /api/tags
    loaded_models = models.JSONField(default=list, blank=True)  # in memory, /api/ps
    # The last probe asked for its loaded models and got an error: loaded_models
    # are then what it held, not what it holds (network.status.models_known).
    loaded_models_failed = models.BooleanField(default=False)
    vram_used_bytes = models.BigIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    # Flap detection: the status the last probe alone gave, and a score that each
    # change of it raises by 1 and every probe decays (network.status).
    probe_status = models.CharField(
        max_length=16, choices=NodeStatus.choices, default=NodeStatus.UNKNOWN
    )
    flap_score = models.FloatField(default=0.0)
    # Sent with every probe (core.httpclient.Credential.stored); set only from the
    # operator's configuration or the API, and never shown: the API, the page and
    # the admin say "basic ***" or "bearer ***"; events and logs carry none.
    credential = models.JSONField(null=True, blank=True, editable=False)
    tags_checked_at = models.DateTimeField(null=True, blank=True)
    # What a server other than Ollama says of its work (network.servers): slots
    # busy and in all, requests running and waiting, KV-cache use, tokens/s.
    serving = models.JSONField(default=dict, blank=True)
    # Its counters at the last probe, with their time: rates are the next
    # probe's differences; a counter that went back is a restart, not a rate.
    counters = models.JSONField(default=dict, blank=True)
    # The node's GPUs, as the GPU exporter the operator named for it reads them
    # (SOLLOL_GPU_EXPORTERS; network.gpus): [{index, uuid, name, memory_total,
    # memory_used, utilization, temperature, power_watts}], bytes and 0..1.
    gpu_exporter = models.CharField(max_length=300, blank=True)
    gpus = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["url"]
        # One node per host:port, whatever scheme it was given with: two adds at
        # once (an app's report and the API) cannot both store it.
        constraints = [
            models.UniqueConstraint(fields=["host", "port"], name="node_host_port")
        ]
        indexes = [labelled_index("node_labelled")]

    def __str__(self) -> str:
        return self.url

    @property
    def address(self) -> str:
        """Return host:port, as activity events name nodes ([::1]:11434 for IPv6)."""
        return host_port(self.host, self.port)


class NodeStatusChange(models.Model):
    """One transition of a node's status, for its recent history."""

    node = models.ForeignKey(
        OllamaNode, on_delete=models.CASCADE, related_name="status_changes"
    )
    old_status = models.CharField(max_length=16, choices=NodeStatus.choices)
    new_status = models.CharField(max_length=16, choices=NodeStatus.choices)
    reason = models.TextField(blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["node", "-at"], name="node_status_change_at")]

    def __str__(self) -> str:
        return f"{self.node}: {self.old_status} → {self.new_status}"


class RpcBackend(ProbedTarget):
    """A llama.cpp ggml-rpc-server the dashboard probes over its binary protocol."""

    address = models.CharField(max_length=300, unique=True)  # host:port
    status = models.CharField(
        max_length=16, choices=BackendStatus.choices, default=BackendStatus.UNKNOWN
    )
    protocol = models.CharField(max_length=32, blank=True)
    devices = models.JSONField(default=list, blank=True)  # [{index, free, total}]
    # The protocol session is opened sparingly (the server serves one client at a
    # time); between sessions a TCP connect tells whether it is alive.
    session_at = models.DateTimeField(null=True, blank=True)
    # The llama.cpp coordinator (a llama-server or llama-cli with --rpc) that holds
    # it, as host:port: declared by the operator (SOLLOL_RPC_COORDINATORS), or
    # inferred (held busy while one llama.cpp node serves); "" when none.
    coordinator = models.CharField(max_length=300, blank=True)
    coordinator_source = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["address"]
        indexes = [labelled_index("backend_labelled")]

    def __str__(self) -> str:
        return self.address


class ProbeCycle(models.Model):
    """The last probe cycle, so operators can see whether probing keeps up."""

    class Name(models.TextChoices):
        # The last cycle's figures (sharded: the current round's, summed).
        LAST_CYCLE = "network", "Last cycle"
        # The number of the last sharded round begun, and what the one before missed.
        ROUND = "round", "Sharded round"

    name = models.CharField(max_length=32, primary_key=True, choices=Name.choices)
    started_at = models.DateTimeField()
    seconds = models.FloatField()
    nodes = models.PositiveIntegerField()
    backends = models.PositiveIntegerField()
    changes = models.PositiveIntegerField()
    round = models.PositiveBigIntegerField(default=0)  # the last sharded round begun
    # Sharded: nodes and backends the round before the last left unprobed (its
    # worker died with their batch); each is probed in the next round.
    missed = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.nodes} nodes in {self.seconds:.2f}s"


class Removed(models.Model):
    """A node URL or backend address the operator removed: not re-added by others.

    Applications report their nodes on every heartbeat, and the opt-in scan finds
    the same addresses every run: without this, a removed node came back within a
    second, with a new id and no history. Adding it through the API again (or
    configuring it) lifts the removal; so does deleting this row in the admin.
    """

    class Kind(models.TextChoices):
        NODE = "node", "Ollama node"
        BACKEND = "backend", "RPC backend"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    key = models.CharField(max_length=300)  # the node's url or the backend's address
    removed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="removed_once")
        ]
        verbose_name = "removed node or backend"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key}"

"""What GET /api/ray/metrics and /api/dask/metrics answer, described for the
OpenAPI schema.

These serializers describe; they do not serialize. The answer is built by
frameworks.services.metrics from the newest snapshot, whose body the collectors
read from the cluster (frameworks.collectors), and tests check each answer against
these descriptions strictly (tests/openapi.py).

Every field the cluster fills is null until a collection found the cluster
active (not configured, pending, unreachable, refused: all null), and null
wherever the cluster did not say (an optional endpoint that failed, a field a
release renamed). Counts by state are open objects: the cluster names the states.
"""

from __future__ import annotations

from rest_framework import serializers

from frameworks.choices import FrameworkStatus, Kind
from frameworks.services import PENDING

# The answer's status: what the last collection found, or "pending" while a
# configured framework has not been collected yet.
STATUSES = [*FrameworkStatus.choices, (PENDING, "Pending")]


def number(**options) -> serializers.FloatField:
    """A number the cluster reports (an integer or not), or null."""
    return serializers.FloatField(allow_null=True, **options)


def text(**options) -> serializers.CharField:
    """A string the cluster reports, or null."""
    return serializers.CharField(allow_null=True, **options)


def by_state(**options) -> serializers.DictField:
    """{state: count}, in the cluster's own names of the states."""
    return serializers.DictField(child=serializers.IntegerField(), **options)


class UsedTotalSerializer(serializers.Serializer):
    used = number()
    total = number()


class ResourcesSerializer(serializers.Serializer):
    """Logical resources, each present only when the cluster reports it."""

    CPU = UsedTotalSerializer(required=False)
    GPU = UsedTotalSerializer(required=False)
    memory = UsedTotalSerializer(required=False, help_text="bytes")
    object_store_memory = UsedTotalSerializer(required=False, help_text="bytes")


class RayGpuSerializer(serializers.Serializer):
    index = number()
    name = text()
    uuid = text()
    utilization_percent = number()
    memory_used_mb = number()
    memory_total_mb = number()


class RayNodeSerializer(serializers.Serializer):
    node_id = text()
    hostname = text()
    ip = text()
    state = serializers.CharField(help_text="ALIVE, DEAD, ... (UNKNOWN: not said)")
    is_head = serializers.BooleanField()
    cpu_percent = number()
    cpus_logical = number()
    cpus_physical = number()
    memory_total = number(help_text="bytes")
    memory_available = number()
    memory_percent = number()
    memory_used = number()
    workers = number(help_text="worker processes")
    resources = ResourcesSerializer(allow_null=True)
    gpus = RayGpuSerializer(many=True)


class DaskNodeSerializer(RayNodeSerializer):
    """A Dask worker in the shape of Ray's nodes, so one reader fits both: what
    Ray knows of a machine (physical CPUs, GPUs, worker processes) is null."""

    gpus = RayGpuSerializer(many=True, allow_null=True, help_text="null: not known")
    name = text()
    status = text(help_text="the worker's own status (null: not said)")


class RayJobSerializer(serializers.Serializer):
    job_id = text()
    submission_id = text()
    type = text(help_text="DRIVER, SUBMISSION")
    entrypoint = text()
    start_time = number(help_text="epoch seconds")


class RayJobsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    running = serializers.IntegerField()
    pending = serializers.IntegerField()
    by_status = by_state()
    running_jobs = RayJobSerializer(many=True, help_text="the first 20 running")


class RaySummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_state = by_state()


class FrameworkMetricsSerializer(serializers.Serializer):
    framework = serializers.ChoiceField(Kind.choices)
    status = serializers.ChoiceField(STATUSES)
    status_since = number(help_text="epoch seconds; null: not known")
    dashboard_url = text(help_text="where it is collected (no password); null: unset")
    public_url = text(help_text="where a browser opens its dashboard")
    collected_at = number(help_text="epoch seconds; null: never collected")
    duration_ms = number(help_text="the collection's")
    stale = serializers.BooleanField(help_text="collections stopped: numbers are old")
    error = text(help_text="why it is not active")
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="what failed short of failing the collection (an optional endpoint)",
    )


class PointSerializer(serializers.Serializer):
    """One collection's numbers for the sparklines; only t and status when the
    collection did not find the cluster active."""

    t = serializers.FloatField(help_text="epoch seconds")
    status = serializers.ChoiceField(FrameworkStatus.choices)


def sample() -> serializers.FloatField:
    """A number of a point, there when the collection found the cluster active."""
    return number(required=False)


class RayPointSerializer(PointSerializer):
    cpu_used = sample()
    cpu_total = sample()
    gpu_used = sample()
    gpu_total = sample()
    memory_used = sample()
    object_store_used = sample()
    nodes_alive = sample()
    cpu_percent = sample()
    running_jobs = sample()
    running_tasks = sample()


class RayMetricsSerializer(FrameworkMetricsSerializer):
    ray_version = text()
    ray_commit = text()
    session_name = text()
    nodes = RayNodeSerializer(
        many=True, allow_null=True, help_text="alive first, at most 256"
    )
    nodes_total = serializers.IntegerField(allow_null=True)
    nodes_alive = serializers.IntegerField(allow_null=True)
    resources = ResourcesSerializer(allow_null=True, help_text="the cluster's")
    jobs = RayJobsSerializer(allow_null=True)
    tasks = RaySummarySerializer(allow_null=True)
    actors = RaySummarySerializer(allow_null=True)
    history = RayPointSerializer(many=True, help_text="oldest first")


class DaskSchedulerSerializer(serializers.Serializer):
    id = text()
    address = text()
    started = number(help_text="epoch seconds")


class DaskWorkerSerializer(serializers.Serializer):
    address = text()
    name = text()
    host = text()
    status = text()
    nthreads = number()
    memory_limit = number(help_text="bytes")
    memory = number(help_text="the process's RSS, bytes")
    managed_bytes = number()
    spilled_bytes = number()
    cpu_percent = number()
    tasks = by_state(help_text="the worker's tasks by state (executing, ...)")
    last_seen = number(help_text="epoch seconds")


class DaskResourcesSerializer(serializers.Serializer):
    workers = serializers.IntegerField(allow_null=True)
    threads = number()
    memory = UsedTotalSerializer(help_text="bytes")
    cpu_percent = number(help_text="the workers' mean")


class DaskTasksSerializer(serializers.Serializer):
    """The scheduler's counts (/json/counts.json)."""

    processing = number()
    waiting = number()
    waiting_data = number()
    erred = number()
    memory = number()
    released = number()
    unrunnable = number()
    tasks = number()
    bytes = number()
    clients = number()
    idle = number()
    saturated = number()
    desired_workers = number()


class DaskPointSerializer(PointSerializer):
    workers = sample()
    threads = sample()
    memory_used = sample()
    memory_total = sample()
    cpu_percent = sample()
    processing = sample()
    waiting = sample()
    erred = sample()


class DaskMetricsSerializer(FrameworkMetricsSerializer):
    dask_version = text(help_text="always null: the scheduler does not say")
    scheduler = DaskSchedulerSerializer(allow_null=True)
    workers = DaskWorkerSerializer(
        many=True, allow_null=True, help_text="at most 256; null: not read"
    )
    workers_total = serializers.IntegerField(allow_null=True)
    nodes = DaskNodeSerializer(many=True, allow_null=True, help_text="the workers")
    resources = DaskResourcesSerializer(allow_null=True)
    tasks = DaskTasksSerializer(allow_null=True)
    history = DaskPointSerializer(many=True, help_text="oldest first")

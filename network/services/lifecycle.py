"""Which nodes and backends the dashboard watches: found, added, removed.

Sources: the operator's configuration and localhost (sync_configured), the API
(add_*/remove_*), applications' reports (ensure_reported) and the opt-in scan
(network.discovery). What the operator removed stays removed when an app or the
scan reports it again.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet

from activity.services import NewEvent, record_events
from core import addresses
from core import labels as checked
from core.db import prune_newest, save_fields
from core.jsonio import PayloadError
from network import allowlist, gpus
from network.choices import NodeKind, NodeStatus, Source
from network.models import NodeStatusChange, OllamaNode, Removed, RpcBackend
from network.services.events import backend_event, node_event

logger = logging.getLogger(__name__)

LOCALHOST_NODE = "http://127.0.0.1:11434"
LOCALHOST_BACKEND = "127.0.0.1:50052"
NODE_SETTINGS = "SOLLOL_OLLAMA_NODES or SOLLOL_NODES"


def _parse_all(
    values: Iterable[str], parse: Callable[[str], tuple], source: str
) -> dict[str, tuple]:
    """Return {address: parsed} of the values that parse; log the others.

    parsed is what parse returns: (address, host, port[, credential]). One bad
    entry from an app or the environment must not hide the good ones; the log
    line shows the address without its credentials (core.addresses.masked).
    """
    parsed: dict[str, tuple] = {}
    for value in values:
        try:
            address = parse(value)
        except PayloadError as exc:
            logger.warning("ignoring an address from %s: %s", source, exc)
            continue
        parsed[address[0]] = address
    return parsed


# Sources that are the operator's own say: they bring back what was removed.
OPERATOR_SOURCES = frozenset({Source.CONFIG, Source.LOCALHOST, Source.API})
# Sources that may give a node credentials: an application's metadata and the
# scan are shown to everyone and never carry them.
CREDENTIAL_SOURCES = frozenset({Source.CONFIG, Source.API})


def _node_parser(source: str) -> Callable[[str], addresses.NodeAddress]:
    return partial(addresses.node_url, credentials=source in CREDENTIAL_SOURCES)


def ensure_nodes(
    values: Iterable[str],
    *,
    source: str,
    now: dt.datetime,
    default_kind: str = NodeKind.OLLAMA,
    labels: dict[str, str] | None = None,
) -> list[OllamaNode]:
    """Make sure the nodes exist; return the ones that were new.

    A new node not declared with a kind gets default_kind (UNKNOWN: its first
    probe tells), and `labels` when given.
    """
    wanted = _parse_all(values, _node_parser(source), source)
    if not wanted:
        return []
    with transaction.atomic():
        created = _create_missing(
            OllamaNode,
            "url",
            wanted,
            source=source,
            now=now,
            default_kind=default_kind,
            labels=labels,
        )
        if source in CREDENTIAL_SOURCES:
            _keep_credentials(wanted.values(), source=source, created=created)
            _keep_kinds(wanted.values(), created=created)
        record_events(
            [
                node_event(
                    "node_discovered",
                    node,
                    f"✅ New node discovered: {node.url}"
                    + (f" (rejected: {node.last_error})" if node.last_error else ""),
                    source=node.source,
                )
                for node in created
            ],
            now=now,
        )
    return created


def _create_missing(
    model: type[OllamaNode] | type[RpcBackend],
    key: str,
    wanted: dict[str, tuple],
    *,
    source: str,
    now: dt.datetime,
    default_kind: str | None = None,
    labels: dict[str, str] | None = None,
) -> list:
    """Insert the wanted nodes or backends not stored yet; return those it made
    (nodes of the kind each was declared as, else of `default_kind`; with
    `labels` when given).

    What the operator removed stays removed when an application or the scan
    reports it again; the operator's own sources (configuration, localhost, the
    API) bring it back and lift the removal.
    """
    kind = Removed.Kind.NODE if model is OllamaNode else Removed.Kind.BACKEND
    removed = Removed.objects.filter(kind=kind, key__in=list(wanted))
    if source in OPERATOR_SOURCES:
        removed.delete()
        known = set()
    else:
        known = set(removed.values_list("key", flat=True))
    known |= set(
        model.objects.filter(**{f"{key}__in": list(wanted)}).values_list(key, flat=True)
    )
    # The same host:port is one node, whatever the scheme it was given with.
    taken = set(
        model.objects.filter(
            host__in={host for _, host, *_ in wanted.values()}
        ).values_list("host", "port")
    )
    new = []
    for value, (_, host, port, *more) in wanted.items():
        if value in known or (host, port) in taken:
            continue
        taken.add((host, port))
        fields = {key: value, "host": host, "port": port}
        if labels:
            fields["labels"] = labels
        if more and more[0] is not None:  # a node's credential
            fields["credential"] = more[0].stored()
        if len(more) > 1:  # a node's declared kind, or the default
            declared = more[1] if more[1] is not None else default_kind
            if declared is not None:
                fields["kind"] = declared
        new.append(_refused_at_once(model(**fields, source=source, created_at=now)))
    model.objects.bulk_create(new, ignore_conflicts=True)
    # ignore_conflicts leaves pks unset: read back the rows this call created.
    return list(
        model.objects.filter(
            **{f"{key}__in": [getattr(row, key) for row in new]},
            created_at=now,
            source=source,
        )
    )


def _keep_credentials(
    wanted: Iterable[addresses.NodeAddress], *, source: str, created: list
) -> None:
    """Store the credentials the operator gave for nodes that existed already.

    A credential given replaces the stored one. A configured entry without one
    clears it for a node the configuration added (the operator took the token
    out); the API, without one, leaves what is stored, and never changes the
    credential of a node the configuration added (add_node refuses that).
    """
    new = {node.id for node in created}
    by_place = {(node.host, node.port): node for node in wanted}
    # Only rows that may change: this runs at every sync of a large fleet.
    with_credential = {
        node.host for node in by_place.values() if node.credential is not None
    }
    candidates = Q(host__in=with_credential)
    if source == Source.CONFIG:
        candidates |= Q(source=Source.CONFIG, credential__isnull=False)
    changed = []
    for node in (
        OllamaNode.objects.filter(candidates)
        .exclude(id__in=new)
        .only("id", "host", "port", "source", "credential")
    ):
        given = by_place.get((node.host, node.port))
        clears = source == Source.CONFIG == node.source
        if given is None or (given.credential is None and not clears):
            continue
        if source == Source.API and node.source == Source.CONFIG:
            continue
        stored = given.credential.stored() if given.credential else None
        if node.credential != stored:
            node.credential = stored
            changed.append(node)
    save_fields(changed, ["credential"])


def _keep_kinds(wanted: Iterable[addresses.NodeAddress], *, created: list) -> None:
    """Store the kind the operator declared for nodes that existed already."""
    declared = {(n.host, n.port): n.kind for n in wanted if n.kind is not None}
    if not declared:
        return
    new = {node.id for node in created}
    changed = []
    for node in (
        OllamaNode.objects.filter(host__in={host for host, _ in declared})
        .exclude(id__in=new)
        .only("id", "host", "port", "kind")
    ):
        kind = declared.get((node.host, node.port))
        if kind is not None and node.kind != kind:
            node.kind = kind
            changed.append(node)
    save_fields(changed, ["kind"])


def _refused_at_once(target: OllamaNode | RpcBackend) -> OllamaNode | RpcBackend:
    """Store a told-about IP literal outside the allowed ranges as rejected.

    Host names are checked when they are resolved, before each probe.
    """
    if target.source in allowlist.GATED_SOURCES:
        reason = allowlist.literal_refusal(target.host)
        if reason:
            target.status = NodeStatus.REJECTED  # the same value for backends
            target.last_error = f"not contacted: {reason}"
    return target


def add_node(
    value: str, *, now: dt.datetime, labels: dict[str, str] | None = None
) -> tuple[OllamaNode, bool]:
    """Add a node by hand (API); return it and whether it was new.

    labels (checked already), when given, replace a known node's; the keys
    SOLLOL_NODE_LABELS gives for its address win over them. Raise StillConfigured
    when it gives credentials to a configured node.
    """
    _, host, port, credential, _ = addresses.node_url(value, credentials=True)
    configured = OllamaNode.objects.filter(
        host=host, port=port, source=Source.CONFIG
    ).first()
    if configured is not None and credential is not None:
        raise StillConfigured(
            f"{configured.url} is in {NODE_SETTINGS}: give its credentials there"
        )
    given = _with_configured(addresses.host_port(host, port), labels or {})
    created = ensure_nodes([value], source=Source.API, now=now, labels=given)
    if created:
        return created[0], True
    node = OllamaNode.objects.get(host=host, port=port)
    if labels is not None:
        _relabel(node, labels)
    return node, False


class StillConfigured(Exception):
    """The operator's configuration would add it back at once; its text says where."""


def _still_configured(
    key: str, source: str, parse: Callable, setting: str, localhost: str
) -> str | None:
    """Say why the operator's configuration would add key back at once, if it would."""
    entries = (
        configured_nodes() if setting == NODE_SETTINGS else getattr(settings, setting)
    )
    configured = _parse_all(entries, parse, Source.CONFIG)
    if source == Source.CONFIG and key in configured:
        return f"{key} is in {setting}: remove it there"
    if (
        source == Source.LOCALHOST
        and settings.SOLLOL_DISCOVER_LOCALHOST
        and key in _parse_all([localhost], parse, Source.LOCALHOST)
    ):
        return f"{key} is watched because SOLLOL_DISCOVER_LOCALHOST is true"
    return None


def _remember_removal(kind: str, key: str, now: dt.datetime) -> None:
    Removed.objects.update_or_create(kind=kind, key=key, defaults={"removed_at": now})


def remove_node(node_id: int, *, now: dt.datetime) -> OllamaNode | None:
    """Forget a node; return it, or None if there was none with that id.

    Raise StillConfigured for one the configuration would add back at once.
    """
    return _remove(
        OllamaNode.objects.filter(pk=node_id),
        key="url",
        removal=Removed.Kind.NODE,
        parse=_node_parser(Source.CONFIG),
        setting=NODE_SETTINGS,
        localhost=LOCALHOST_NODE,
        event=lambda node: node_event(
            "node_removed", node, f"🗑️ Node removed: {node.url}"
        ),
        now=now,
    )


def _remove(
    target: QuerySet,
    *,
    key: str,
    removal: str,
    parse: Callable,
    setting: str,
    localhost: str,
    event: Callable[[Any], NewEvent],
    now: dt.datetime,
) -> OllamaNode | RpcBackend | None:
    """Delete the one row of target, remember the removal, and say so."""
    with transaction.atomic():
        found = target.select_for_update().first()
        if found is None:
            return None
        value = getattr(found, key)
        if why := _still_configured(value, found.source, parse, setting, localhost):
            raise StillConfigured(why)
        removed = event(found)
        found.delete()
        _remember_removal(removal, value, now)
        record_events([removed], now=now)
    return found


def ensure_backends(
    values: Iterable[str],
    *,
    source: str,
    now: dt.datetime,
    labels: dict[str, str] | None = None,
) -> list[RpcBackend]:
    """Make sure the backends exist; return the ones that were new (with
    `labels` when given)."""
    wanted = _parse_all(values, addresses.backend_address, source)
    if not wanted:
        return []
    with transaction.atomic():
        return _create_missing(
            RpcBackend, "address", wanted, source=source, now=now, labels=labels
        )


def add_backend(
    value: str, *, now: dt.datetime, labels: dict[str, str] | None = None
) -> tuple[RpcBackend, bool]:
    """Add a backend by hand (API); return it and whether it was new.

    labels, when given, replace a known backend's (as add_node's do).
    """
    address, host, port = addresses.backend_address(value)
    given = _with_configured(addresses.host_port(host, port), labels or {})
    created = ensure_backends([address], source=Source.API, now=now, labels=given)
    if created:
        return created[0], True
    backend = RpcBackend.objects.get(address=address)
    if labels is not None:
        _relabel(backend, labels)
    return backend, False


def remove_backend(backend_id: int, *, now: dt.datetime) -> RpcBackend | None:
    """Forget a backend; return it, or None if there was none with that id.

    Raise StillConfigured for one the configuration would add back at once.
    """
    return _remove(
        RpcBackend.objects.filter(pk=backend_id),
        key="address",
        removal=Removed.Kind.BACKEND,
        parse=addresses.backend_address,
        setting="SOLLOL_RPC_BACKENDS",
        localhost=LOCALHOST_BACKEND,
        event=lambda backend: backend_event(
            "backend_disconnected",
            backend,
            f"🗑️ RPC backend removed: {backend.address}",
            removed=True,
        ),
        now=now,
    )


def _name_gpu_exporters(entries: Iterable[str]) -> None:
    """Give each node the GPU exporter the operator named for it (host:port=URL);
    a node no longer named has none."""
    named: dict[str, str] = {}
    for entry in entries:
        try:
            node, url = gpus.exporter_entry(entry)
        except PayloadError as exc:
            logger.warning("ignoring a GPU exporter from the configuration: %s", exc)
            continue
        named[node] = url
    hosts = {addresses.split_host_port(node)[0] for node in named}
    named_now, cleared = [], []
    for node in OllamaNode.objects.filter(Q(host__in=hosts) | ~Q(gpu_exporter="")).only(
        "id", "host", "port", "gpu_exporter"
    ):
        url = named.get(node.address.lower(), "")
        if node.gpu_exporter == url:
            continue
        node.gpu_exporter = url
        if url:
            named_now.append(node)
        else:
            node.gpus = []  # what it said is no longer read
            cleared.append(node)
    save_fields(named_now, ["gpu_exporter"])
    save_fields(cleared, ["gpu_exporter", "gpus"])


LABELS_SETTING = "SOLLOL_NODE_LABELS"


def configured_labels(*, warn: bool = False) -> list[tuple[str, dict[str, str]]]:
    """The good entries of SOLLOL_NODE_LABELS: (host:port glob, labels) each, in
    their order. A bad entry is left out (logged when warn: sync says it once a
    round, as it does a bad GPU exporter), never stopping the start or a write."""
    parsed = []
    for entry in settings.SOLLOL_NODE_LABELS:
        try:
            [(glob, given)] = checked.configured([entry], LABELS_SETTING)
        except PayloadError as exc:
            if warn:
                logger.warning("ignoring labels from the configuration: %s", exc)
            continue
        parsed.append((_address_glob(glob), given))
    return parsed


def _address_glob(glob: str) -> str:
    """The glob of host:port as host_port names it: hosts are kept lower-case, and
    the brackets around an IPv6 host ([::1]:11434) are its own, not a glob's set."""
    glob = glob.lower()
    if glob.startswith("[") and "]" in glob:
        host, _, rest = glob[1:].partition("]")
        return f"[[]{host}[]]{rest}"
    return glob


def _with_configured(
    address: str,
    own: dict[str, str],
    entries: list[tuple[str, dict[str, str]]] | None = None,
) -> dict[str, str]:
    """own, with the labels of every entry whose glob matches address merged over
    (the configuration's keys win; a later entry over an earlier one)."""
    merged = dict(own) if isinstance(own, dict) else {}
    for glob, given in configured_labels() if entries is None else entries:
        if fnmatch.fnmatchcase(address, glob):
            merged.update(given)
    return merged


def _relabel(target: OllamaNode | RpcBackend, given: dict[str, str]) -> None:
    """Replace target's labels with given (and the configuration's), writing only
    that column and only when they change: a probe may be saving the row."""
    merged = _with_configured(addresses.host_port(target.host, target.port), given)
    if merged != target.labels:
        target.labels = merged
        save_fields([target], ["labels"])


def set_labels(
    model: type[OllamaNode] | type[RpcBackend],
    target_id: int,
    given: dict[str, str] | None,
) -> OllamaNode | RpcBackend | None:
    """Replace the labels of one node or backend (API; None: keep them); return
    it, or None if there is none with that id. The keys SOLLOL_NODE_LABELS gives
    for its address stay theirs: the next sync would put them back anyway."""
    target = model.objects.filter(pk=target_id).first()
    if target is not None and given is not None:
        _relabel(target, given)
    return target


def _apply_configured_labels() -> None:
    """Merge SOLLOL_NODE_LABELS over every node's and backend's labels, whatever
    its source. Sync runs every probe round: one read of each table's labels and
    one write of only the rows whose labels change (none once they are applied)."""
    entries = configured_labels(warn=True)
    if not entries:
        return
    for model in (OllamaNode, RpcBackend):
        changed = []
        for target_id, host, port, own in model.objects.values_list(
            "id", "host", "port", "labels"
        ):
            merged = _with_configured(addresses.host_port(host, port), own, entries)
            if merged != own:
                changed.append(model(id=target_id, labels=merged))
        save_fields(changed, ["labels"])


def configured_nodes() -> list[str]:
    """The nodes of the operator's configuration: SOLLOL_OLLAMA_NODES (Ollama's,
    unless an entry names its kind) and SOLLOL_NODES (of any kind)."""
    return [*settings.SOLLOL_OLLAMA_NODES, *settings.SOLLOL_NODES]


def sync_configured(*, now: dt.datetime) -> None:
    """Add the nodes and backends the operator configured (and localhost), and
    give every node and backend the labels the operator configured for it."""
    ensure_nodes(settings.SOLLOL_OLLAMA_NODES, source=Source.CONFIG, now=now)
    # Of any kind: one not named is detected at its first probe.
    ensure_nodes(
        settings.SOLLOL_NODES,
        source=Source.CONFIG,
        now=now,
        default_kind=NodeKind.UNKNOWN,
    )
    _name_gpu_exporters(settings.SOLLOL_GPU_EXPORTERS)
    ensure_backends(settings.SOLLOL_RPC_BACKENDS, source=Source.CONFIG, now=now)
    if settings.SOLLOL_DISCOVER_LOCALHOST:
        ensure_nodes([LOCALHOST_NODE], source=Source.LOCALHOST, now=now)
        ensure_backends([LOCALHOST_BACKEND], source=Source.LOCALHOST, now=now)
    # Last: the nodes and backends this sync added are labelled in it too.
    _apply_configured_labels()


def _addresses(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)][:1000]
    return []


def ensure_reported(metadata: dict[str, Any], *, now: dt.datetime) -> None:
    """Add the nodes and backends an application reports in its metadata."""
    nodes = _addresses(metadata.get("nodes")) + _addresses(metadata.get("ollama_nodes"))
    backends = _addresses(metadata.get("rpc_backends"))
    if nodes:
        ensure_nodes(nodes, source=Source.APPLICATION, now=now)
    if backends:
        ensure_backends(backends, source=Source.APPLICATION, now=now)


def prune_node_history(*, keep: int) -> int:
    """Delete status changes beyond the newest `keep` of each node."""
    crowded = (
        NodeStatusChange.objects.values("node_id")
        .annotate(count=Count("id"))
        .filter(count__gt=keep)
        .values_list("node_id", flat=True)
    )
    return sum(
        prune_newest(NodeStatusChange.objects.filter(node_id=node_id), keep=keep)
        for node_id in crowded
    )

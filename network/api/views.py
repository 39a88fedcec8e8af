from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from rest_framework.exceptions import APIException, NotFound, ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import history
from activity.api.history import WINDOW, series_history, window_of
from activity.api.schemas import HistoryRowsSerializer, HistorySerializer
from core import labels
from core.jsonio import PayloadError
from core.pagination import page_of, page_parameters
from network.api import schemas
from network.api.serializers import (
    backend_data,
    node_data,
    node_history,
    node_list_json,
    node_rpc_backends,
)
from network.models import OllamaNode, RpcBackend
from network.services import lifecycle


class StillConfigured(APIException):
    """409: the operator's configuration would add it back at once."""

    status_code = 409
    default_code = "still_configured"


def _removed(remove, target_id: int, what: str):
    try:
        removed = remove(target_id, now=timezone.now())
    except lifecycle.StillConfigured as exc:
        raise StillConfigured(str(exc)) from None
    if removed is None:
        raise NotFound(f"no {what} with id {target_id}")
    return Response({"status": "ok", "id": target_id})


def _address(request, field: str) -> str:
    body = request.data
    if not isinstance(body, dict) or not isinstance(body.get(field), str):
        raise ParseError(f'the body must be {{"{field}": "..."}}')
    return body[field]


def _given_labels(request) -> dict[str, str] | None:
    """The labels a POST gives, checked (a bad one is a 400 naming it); None: the
    body has none (or null), and a known node or backend keeps its own."""
    given = request.data.get("labels")
    return None if given is None else labels.labels(given, "labels")


def _labels_change(request) -> dict[str, str] | None:
    """The labels a PATCH gives (None: it gives none, and changes nothing, as a
    PATCH leaves out what it keeps). It changes nothing else: another field is
    refused rather than ignored, so that a misspelt one is not taken as done."""
    body = request.data
    if not isinstance(body, dict):
        raise ParseError('the body must be {"labels": {"name": "value", ...}}')
    other = sorted(set(body) - {"labels"})
    if other:
        raise PayloadError(
            f"{other[0][:100]!r} cannot be changed here; a PATCH takes only labels"
        )
    if "labels" not in body:
        return None
    return labels.labels(body["labels"], "labels")


# A page of nodes or backends: 100 unless asked (1,000 nodes are 1.6 MB in all).
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class NodeListView(APIView):
    query_parameters = {"GET": page_parameters(DEFAULT_PAGE, MAX_PAGE)}
    request_bodies = {"POST": schemas.NodeAddSerializer}
    responses = {"GET": schemas.NodeListSerializer, "POST": schemas.NodeAddedSerializer}

    def get(self, request):
        page = page_of(request.query_params, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        return HttpResponse(
            node_list_json(OllamaNode.objects.order_by("url", "id"), page),
            content_type="application/json",
        )

    def post(self, request):
        url = _address(request, "url")
        given = _given_labels(request)  # before anything is added
        try:
            node, created = lifecycle.add_node(url, now=timezone.now(), labels=given)
        except lifecycle.StillConfigured as exc:
            raise StillConfigured(str(exc)) from None
        return Response(
            {"status": "ok", "created": created, "node": node_data(node)},
            status=201 if created else 200,
        )


def _node_detail(node: OllamaNode | None, node_id: int) -> Response:
    if node is None:
        raise NotFound(f"no node with id {node_id}")
    return Response(
        {
            **node_data(node),
            "history": node_history(node),
            "rpc_backends": node_rpc_backends(node),
        }
    )


class NodeDetailView(APIView):
    request_bodies = {"PATCH": schemas.LabelsChangeSerializer}
    responses = {
        "GET": schemas.NodeDetailSerializer,
        "PATCH": schemas.NodeDetailSerializer,
        "DELETE": schemas.RemovedSerializer,
    }

    def get(self, request, node_id: int):
        return _node_detail(OllamaNode.objects.filter(pk=node_id).first(), node_id)

    def patch(self, request, node_id: int):
        """Replace the node's labels; answer it as GET does."""
        given = _labels_change(request)
        return _node_detail(lifecycle.set_labels(OllamaNode, node_id, given), node_id)

    def delete(self, request, node_id: int):
        return _removed(lifecycle.remove_node, node_id, "node")


class BackendListView(APIView):
    query_parameters = {"GET": page_parameters(DEFAULT_PAGE, MAX_PAGE)}
    request_bodies = {"POST": schemas.BackendAddSerializer}
    responses = {
        "GET": schemas.BackendListSerializer,
        "POST": schemas.BackendAddedSerializer,
    }

    def get(self, request):
        page = page_of(request.query_params, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        backends = RpcBackend.objects.order_by("address", "id")
        listed = [backend_data(b) for b in page.of(backends)]
        return Response(page.answer("backends", listed, backends.count()))

    def post(self, request):
        address = _address(request, "address")
        given = _given_labels(request)  # before anything is added
        backend, created = lifecycle.add_backend(
            address, now=timezone.now(), labels=given
        )
        return Response(
            {
                "status": "ok",
                "created": created,
                "backend": backend_data(backend),
            },
            status=201 if created else 200,
        )


def _backend(backend: RpcBackend | None, backend_id: int) -> Response:
    if backend is None:
        raise NotFound(f"no RPC backend with id {backend_id}")
    return Response(backend_data(backend))


class BackendDetailView(APIView):
    request_bodies = {"PATCH": schemas.LabelsChangeSerializer}
    responses = {
        "GET": schemas.BackendSerializer,
        "PATCH": schemas.BackendSerializer,
        "DELETE": schemas.RemovedSerializer,
    }

    def get(self, request, backend_id: int):
        return _backend(RpcBackend.objects.filter(pk=backend_id).first(), backend_id)

    def patch(self, request, backend_id: int):
        """Replace the backend's labels; answer it as GET does."""
        given = _labels_change(request)
        return _backend(lifecycle.set_labels(RpcBackend, backend_id, given), backend_id)

    def delete(self, request, backend_id: int):
        return _removed(lifecycle.remove_backend, backend_id, "RPC backend")


def _exists(model, target_id: int, what: str) -> None:
    if not model.objects.filter(pk=target_id).exists():
        raise NotFound(f"no {what} with id {target_id}")


class NodeHistoryView(APIView):
    """GET /api/network/nodes/<id>/history?window=24h: the node's measurements
    (usable share, latency, VRAM, loaded models) and its availability."""

    query_parameters = {"GET": [WINDOW]}
    responses = {"GET": HistorySerializer}

    def get(self, request, node_id: int):
        _exists(OllamaNode, node_id, "node")
        return series_history(request, "node", node_id)


class BackendHistoryView(APIView):
    """GET /api/network/backends/<id>/history?window=24h: usable share, connect
    latency, device memory in use."""

    query_parameters = {"GET": [WINDOW]}
    responses = {"GET": HistorySerializer}

    def get(self, request, backend_id: int):
        _exists(RpcBackend, backend_id, "backend")
        return series_history(request, "backend", backend_id)


class FleetHistoryView(APIView):
    """GET /api/network/history?window=7d: usable nodes of all, their mean
    latency and VRAM, and whether the fleet could serve."""

    query_parameters = {"GET": [WINDOW]}
    responses = {"GET": HistorySerializer}

    def get(self, request):
        return series_history(request, "fleet")


SPARK_FIELDS = ("t", "usable", "latency_ms")
MANY_WINDOW = 86400.0


class NodesHistoryView(APIView):
    """GET /api/network/nodes/history?window=5m: every node's usable share and
    latency at one step (the page's sparklines), coarser the more nodes there
    are; each point a row [t, usable, latency_ms] to keep 1,000 nodes small.
    At most a day: longer, a node's own history or the fleet's answers."""

    query_parameters = {"GET": [WINDOW]}
    responses = {"GET": HistoryRowsSerializer}

    def get(self, request):
        ids = list(OllamaNode.objects.values_list("id", flat=True))
        answer = history.history_many(
            "node",
            ids,
            window=window_of(request, maximum=MANY_WINDOW),
            now=timezone.now(),
            retention=history.retention(),
        )
        answer["fields"] = SPARK_FIELDS
        answer["subjects"] = {
            subject: [[p[f] for f in SPARK_FIELDS] for p in points]
            for subject, points in answer["subjects"].items()
        }
        return Response(answer)


class AvailabilityView(APIView):
    """GET /api/network/availability?window=30d: each node's and backend's share
    of its measurements in which it was usable (null: never measured in the
    window), the least available first."""

    query_parameters = {"GET": [WINDOW]}
    responses = {"GET": schemas.AvailabilitySerializer}

    def get(self, request):
        window = window_of(request)
        now = timezone.now()
        answer = {"window": window, "since": now.timestamp() - window}
        for name, rows, label in (
            ("node", OllamaNode.objects.values_list("id", "url"), "url"),
            ("backend", RpcBackend.objects.values_list("id", "address"), "address"),
        ):
            measured = history.availability(
                name, window=window, now=now, retention=history.retention()
            )
            listed = []
            for target_id, key in rows:
                up, n = measured.get(target_id, (0, 0))
                listed.append(
                    {
                        "id": target_id,
                        label: key,
                        "availability": round(up / n, 6) if n else None,
                        "measurements": n,
                    }
                )
            listed.sort(
                key=lambda r: (r["availability"] is None, r["availability"] or 0)
            )
            answer[name + "s"] = listed
        return Response(answer)

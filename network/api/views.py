from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from rest_framework.exceptions import APIException, NotFound, ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

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


class NodeListView(APIView):
    def get(self, request):
        return HttpResponse(
            node_list_json(OllamaNode.objects.all()),
            content_type="application/json",
        )

    def post(self, request):
        try:
            node, created = lifecycle.add_node(
                _address(request, "url"), now=timezone.now()
            )
        except lifecycle.StillConfigured as exc:
            raise StillConfigured(str(exc)) from None
        return Response(
            {"status": "ok", "created": created, "node": node_data(node)},
            status=201 if created else 200,
        )


class NodeDetailView(APIView):
    def get(self, request, node_id: int):
        node = OllamaNode.objects.filter(pk=node_id).first()
        if node is None:
            raise NotFound(f"no node with id {node_id}")
        return Response(
            {
                **node_data(node),
                "history": node_history(node),
                "rpc_backends": node_rpc_backends(node),
            }
        )

    def delete(self, request, node_id: int):
        return _removed(lifecycle.remove_node, node_id, "node")


class BackendListView(APIView):
    def get(self, request):
        backends = [backend_data(b) for b in RpcBackend.objects.all()]
        return Response({"backends": backends, "total": len(backends)})

    def post(self, request):
        backend, created = lifecycle.add_backend(
            _address(request, "address"), now=timezone.now()
        )
        return Response(
            {
                "status": "ok",
                "created": created,
                "backend": backend_data(backend),
            },
            status=201 if created else 200,
        )


class BackendDetailView(APIView):
    def get(self, request, backend_id: int):
        backend = RpcBackend.objects.filter(pk=backend_id).first()
        if backend is None:
            raise NotFound(f"no RPC backend with id {backend_id}")
        return Response(backend_data(backend))

    def delete(self, request, backend_id: int):
        return _removed(lifecycle.remove_backend, backend_id, "RPC backend")

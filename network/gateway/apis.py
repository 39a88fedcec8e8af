"""The two APIs the gateway speaks: which paths there are, and how each says "error".

Ollama's native API answers errors as {"error": "..."}; its OpenAI-compatible API
(/v1/...) as OpenAI's error object, with the type Ollama's openai.NewError gives
each status. Unknown paths get gin's plain "404 page not found", as from Ollama.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

from core.jsonio import go_json


class Kind(StrEnum):
    INFER = "infer"  # work for a model: routed, queued, recorded
    MODEL = "model"  # about a model (show, retrieve): routed to a node that has it
    FLEET = "fleet"  # answered for the whole fleet (tags, ps, models)
    LOCAL = "local"  # answered by the gateway itself (/, version)
    PINNED = "pinned"  # management: only to the node the client names


@dataclass(frozen=True)
class Endpoint:
    name: str  # as records and metrics name it, e.g. "chat", "v1/chat/completions"
    kind: Kind
    openai: bool = False
    streams_by_default: bool = False

    @property
    def takes_slot(self) -> bool:
        """Whether a request here takes one of its node's slots: work for a
        model does; a question about one or a management call (a pull that
        lasts minutes) does not, as Ollama answers them beside what it
        generates."""
        return self.kind == Kind.INFER


_ENDPOINTS: dict[tuple[str, str], Endpoint] = {}


def _add(methods: str, path: str, endpoint: Endpoint) -> None:
    for method in methods.split("|"):
        _ENDPOINTS[(method, path)] = endpoint


_add("GET|HEAD", "/", Endpoint("root", Kind.LOCAL))
_add("GET|HEAD", "/api/version", Endpoint("version", Kind.LOCAL))
_add("GET|HEAD", "/api/tags", Endpoint("tags", Kind.FLEET))
_add("GET", "/api/ps", Endpoint("ps", Kind.FLEET))
_add("POST", "/api/chat", Endpoint("chat", Kind.INFER, streams_by_default=True))
_add("POST", "/api/generate", Endpoint("generate", Kind.INFER, streams_by_default=True))
_add("POST", "/api/embed", Endpoint("embed", Kind.INFER))
_add("POST", "/api/embeddings", Endpoint("embeddings", Kind.INFER))
_add("POST", "/api/show", Endpoint("show", Kind.MODEL))
for _name in ("pull", "push", "create", "copy"):
    _add("POST", f"/api/{_name}", Endpoint(_name, Kind.PINNED, streams_by_default=True))
_add("DELETE", "/api/delete", Endpoint("delete", Kind.PINNED))
_add("POST", "/v1/chat/completions", Endpoint("v1/chat/completions", Kind.INFER, True))
_add("POST", "/v1/completions", Endpoint("v1/completions", Kind.INFER, True))
_add("POST", "/v1/embeddings", Endpoint("v1/embeddings", Kind.INFER, True))
_add("GET", "/v1/models", Endpoint("v1/models", Kind.FLEET, True))
BLOBS = Endpoint("blobs", Kind.PINNED)
RETRIEVE = Endpoint("v1/models/{model}", Kind.MODEL, True)
_BLOB_PATH = re.compile(r"/api/blobs/sha256[:-][0-9a-f]{64}")
_RETRIEVE_PATH = re.compile(r"/v1/models/(.+)")


def endpoint_for(method: str, path: str) -> tuple[Endpoint | None, str]:
    """Return the endpoint of (method, path) and the model a path names, if any."""
    endpoint = _ENDPOINTS.get((method, path))
    if endpoint is not None:
        return endpoint, ""
    if method in ("HEAD", "POST") and _BLOB_PATH.fullmatch(path):
        return BLOBS, ""
    if method == "GET" and (match := _RETRIEVE_PATH.fullmatch(path)):
        return RETRIEVE, match[1]
    return None, ""


NOT_FOUND_PAGE = b"404 page not found"

_OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def error_body(openai: bool, status: int, message: str) -> bytes:
    """Return an error as the API says it (Go's encoder: HTML-escaped, newline)."""
    if openai:
        payload: dict = {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status, "api_error"),
                "param": None,
                "code": None,
            }
        }
    else:
        payload = {"error": message}
    return go_json(payload) + b"\n"


def stream_error(openai: bool, message: str) -> bytes:
    """Return the line that ends a stream that broke, in the stream's framing."""
    if openai:
        return b"data: " + error_body(True, 500, message).rstrip(b"\n") + b"\n\n"
    return error_body(False, 500, message)


def model_not_found(model: str) -> str:
    """Return Ollama's words for a model it cannot find (handleScheduleError)."""
    return f"model {json.dumps(model)} not found, try pulling it first"

"""Ollama's OpenAI-compatible API, translated as its middleware translates it.

Ollama serves ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models`` and ``/v1/models/{model}`` by turning the OpenAI request into a
native one (``openai.FromChatRequest``, ``FromCompleteRequest``), running the native
handler, and rewriting what it writes (``middleware/openai.go``: ``ChatWriter``,
``CompleteWriter``, ``EmbedWriter``, ``ListWriter``, ``RetrieveWriter``). This module
is that translation; ``simulator.ollama`` runs the native side.

The writers turn native answers into bytes: ``token`` for one streamed token
(pre-encoded pieces, as it runs once per token per stream), ``final`` for the
native ``done`` answer of a stream, ``whole`` for a non-streamed answer, ``error``
for a native error; ``simulator.ollama.NativeWriter`` is the native one, so the
node runs the same work whichever it is given.
"""

from __future__ import annotations

import base64
import random
import struct
from datetime import datetime
from typing import Any

from simulator.httpserver import Response, go_json, json_response

EVENT_STREAM = "text/event-stream"
_OPENAI_JSON = "application/json"  # the writers set it without a charset
_NS = 1_000_000_000
_DONE = b"data: [DONE]\n\n"

# Per-token pieces are cached by token text: replies draw on a small vocabulary.
_CACHE_LIMIT = 8192


def _cached(cache: dict[str, bytes], text: str, build: Any) -> bytes:
    piece = cache.get(text)
    if piece is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        piece = cache[text] = build(text)
    return piece


# ------------------------------------------------------------------- Go-isms


def go_stamp_seconds(stamp: str) -> int:
    """Return ``time.Time.Unix()`` of a Go JSON time (RFC 3339, any offset)."""
    text = stamp
    if "." in text:  # Python's fromisoformat takes at most 6 fractional digits
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + rest[digits:]
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def go_type(value: Any) -> str:
    """Return ``%T`` of what encoding/json decodes ``value`` into (an ``any``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _json_kind(value: Any) -> str:
    """Return how encoding/json names a JSON value in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# The Go type of each request field a client may get wrong, and what fits it.
_STRING = (str, "string")
_BOOL = (bool, "bool")
_INT = (int, "int")
_FLOAT = ((int, float), "float64")


def _check(payload: dict[str, Any], struct_name: str, fields: dict[str, Any]) -> None:
    """Refuse a field of the wrong JSON type with ``c.ShouldBindJSON``'s words."""
    for name, (kinds, go_name) in fields.items():
        value = payload.get(name)
        if value is None or (isinstance(value, kinds) and not isinstance(value, bool)):
            continue
        if kinds is bool and isinstance(value, bool):
            continue
        what = _json_kind(value)
        if what == "number" and go_name == "int":
            what = f"number {value}"  # 2.5 into an int names the number
        raise ValueError(
            f"json: cannot unmarshal {what} into Go struct field "
            f"{struct_name}.{name} of type {go_name}"
        )


# -------------------------------------------------------------------- errors


def error_body(status: int, message: str) -> dict[str, Any]:
    """Return ``openai.NewError``: the type follows the status."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(
        status, "api_error"
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def middleware_error(status: int, message: str) -> Response:
    """Return an error the middleware itself answers (gin's JSON: no newline)."""
    return json_response(status, error_body(status, message))


def writer_error(status: int, message: str) -> Response:
    """Return a native handler's error as a writer rewrites it (json.Encoder)."""
    return Response(status, go_json(error_body(status, message)) + b"\n", _OPENAI_JSON)


def _encoded(payload: Any) -> Response:
    """Return ``json.NewEncoder(w).Encode(payload)`` under the writers' header."""
    return Response(200, go_json(payload) + b"\n", _OPENAI_JSON)


# ------------------------------------------------------------------- writers


def _usage(answer: dict[str, Any]) -> dict[str, int]:
    prompt = answer.get("prompt_eval_count", 0)
    completion = answer.get("eval_count", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _sse(payload: Any) -> bytes:
    return b"data: " + go_json(payload) + b"\n\n"


class ChatWriter:
    """``/v1/chat/completions``: chunks as ``ChatWriter`` writes them (SSE)."""

    __slots__ = ("id", "model", "include_usage", "created", "prefix", "first_sent")

    _deltas: dict[str, bytes] = {}

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self.id = f"chatcmpl-{random.randrange(999)}"
        self.model = model
        self.include_usage = include_usage
        self.created: int | None = None  # pinned from the first answer
        self.prefix = b""
        self.first_sent = False

    def head(self) -> Response:
        """Return the head of the event stream."""
        return Response(200, content_type=EVENT_STREAM, chunks=[])

    def _chunk(self, delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }

    def token(self, text: str, ns: int) -> bytes:
        """Return the event of one token: the role rides on the first only."""
        if not self.first_sent:
            self.first_sent = True
            self.created = ns // _NS
            # Every chunk is the same but for its delta: encode the rest once.
            self.prefix = b"".join(
                (
                    b'data: {"id":"',
                    self.id.encode(),
                    b'","object":"chat.completion.chunk","created":',
                    str(self.created).encode(),
                    b',"model":',
                    go_json(self.model),
                    b',"system_fingerprint":"fp_ollama","choices":[{"index":0,'
                    b'"delta":{',
                )
            )
            role = b'"role":"assistant",'
            return b"".join((self.prefix, role, _delta(text), _CHAT_TAIL))
        return b"".join(
            (self.prefix, _cached(ChatWriter._deltas, text, _delta), _CHAT_TAIL)
        )

    def final(self, answer: dict[str, Any]) -> bytes:
        """Return the finish chunk, the usage chunk if asked for, and ``[DONE]``."""
        if self.created is None:
            self.created = go_stamp_seconds(answer["created_at"])
        events = []
        content = answer.get("message", {}).get("content", "")
        if content or not self.first_sent:  # not the metrics-only trailer
            delta: dict[str, Any] = {"content": content}
            if not self.first_sent:
                delta = {"role": "assistant", "content": content}
                self.first_sent = True
            events.append(_sse(self._chunk(delta, None)))
        finish = self._chunk({}, answer.get("done_reason") or "stop")
        events.append(_sse(finish))
        if self.include_usage:
            finish["choices"] = []
            finish["usage"] = _usage(answer)
            events.append(_sse(finish))
        events.append(_DONE)
        return b"".join(events)

    def whole(self, answer: dict[str, Any]) -> Response:
        """Return ``ToChatCompletion`` of a non-streamed answer."""
        message = answer.get("message", {})
        return _encoded(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": go_stamp_seconds(answer["created_at"]),
                "model": answer.get("model", self.model),
                "system_fingerprint": "fp_ollama",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": message.get("role", ""),
                            "content": message.get("content", ""),
                        },
                        "finish_reason": answer.get("done_reason") or None,
                    }
                ],
                "usage": _usage(answer),
            }
        )

    def error(self, status: int, message: str) -> Response:
        """Return a native error in OpenAI's shape."""
        return writer_error(status, message)


_CHAT_TAIL = b'},"finish_reason":null}]}\n\n'


def _delta(text: str) -> bytes:
    return b'"content":' + go_json(text)


class CompleteWriter:
    """``/v1/completions``: chunks as ``CompleteWriter`` writes them (SSE).

    With ``include_usage`` every chunk carries a zero ``usage``, and a last chunk
    with no choices carries the real one, as Ollama writes it.
    """

    __slots__ = ("id", "model", "include_usage", "second", "prefix", "tail")

    _texts: dict[str, bytes] = {}

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self.id = f"cmpl-{random.randrange(999)}"
        self.model = model
        self.include_usage = include_usage
        self.second = -1
        self.prefix = b""
        self.tail = (
            b'"model":'
            + go_json(model)
            + b',"system_fingerprint":"fp_ollama"'
            + (
                b',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}'
                if include_usage
                else b""
            )
            + b"}\n\n"
        )

    def head(self) -> Response:
        """Return the head of the event stream."""
        return Response(200, content_type=EVENT_STREAM, chunks=[])

    def _chunk(self, created: int, choices: list[Any]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": created,
            "choices": choices,
            "model": self.model,
            "system_fingerprint": "fp_ollama",
        }
        if self.include_usage:
            chunk["usage"] = {
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
            }
        return chunk

    def token(self, text: str, ns: int) -> bytes:
        """Return the event of one token (``created`` is the time it is written)."""
        second = ns // _NS
        if second != self.second:
            self.second = second
            start = b'data: {"id":"%s","object":"text_completion","created":%d'
            self.prefix = start % (self.id.encode(), second)
        return b"".join(
            (
                self.prefix,
                _cached(CompleteWriter._texts, text, _choice),
                self.tail,
            )
        )

    def final(self, answer: dict[str, Any]) -> bytes:
        """Return the ``done`` chunk, the usage chunk if asked for, and ``[DONE]``."""
        created = go_stamp_seconds(answer["created_at"])
        choice = {
            "text": answer.get("response", ""),
            "index": 0,
            "finish_reason": answer.get("done_reason") or None,
        }
        chunk = self._chunk(created, [choice])
        events = [_sse(chunk)]
        if self.include_usage:
            chunk["choices"] = []
            chunk["usage"] = _usage(answer)
            events.append(_sse(chunk))
        events.append(_DONE)
        return b"".join(events)

    def whole(self, answer: dict[str, Any]) -> Response:
        """Return ``ToCompletion`` of a non-streamed answer."""
        return _encoded(
            {
                "id": self.id,
                "object": "text_completion",
                "created": go_stamp_seconds(answer["created_at"]),
                "model": answer.get("model", self.model),
                "system_fingerprint": "fp_ollama",
                "choices": [
                    {
                        "text": answer.get("response", ""),
                        "index": 0,
                        "finish_reason": answer.get("done_reason") or None,
                    }
                ],
                "usage": _usage(answer),
            }
        )

    def error(self, status: int, message: str) -> Response:
        """Return a native error in OpenAI's shape."""
        return writer_error(status, message)


def _choice(text: str) -> bytes:
    return (
        b',"choices":[{"text":' + go_json(text) + b',"index":0,"finish_reason":null}],'
    )


class EmbedWriter:
    """``/v1/embeddings``: ``ToEmbeddingList`` of the native ``/api/embed`` answer."""

    __slots__ = ("model", "encoding_format")

    def __init__(self, model: str, encoding_format: str = "") -> None:
        self.model = model
        self.encoding_format = encoding_format

    def whole(self, answer: dict[str, Any]) -> Response:
        """Return the embedding list (floats, or base64 of little-endian float32)."""
        vectors = answer.get("embeddings")
        if vectors is None:
            return _encoded(
                {
                    "object": "",
                    "data": None,
                    "model": "",
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                }
            )
        data = []
        for index, vector in enumerate(vectors):
            embedding: Any = vector
            if self.encoding_format.lower() == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode()
            data.append({"object": "embedding", "embedding": embedding, "index": index})
        count = answer.get("prompt_eval_count", 0)
        return _encoded(
            {
                "object": "list",
                "data": data or None,
                "model": self.model,
                "usage": {"prompt_tokens": count, "total_tokens": count},
            }
        )

    def error(self, status: int, message: str) -> Response:
        """Return a native error in OpenAI's shape."""
        return writer_error(status, message)


# ---------------------------------------------------------- requests, in


class Refused(Exception):
    """The middleware answers the request itself (400), before any handler."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.response = middleware_error(400, message)


def _bind(body: Any, struct_name: str, fields: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(
            f"json: cannot unmarshal {_json_kind(body)} into Go value of type "
            f"openai.{struct_name}"
        )
    try:
        _check(body, struct_name, fields)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    return body


def read_body(request_json: Any) -> Any:
    """Return the request's JSON, or refuse it as ``c.ShouldBindJSON`` does."""
    try:
        return request_json()
    except EOFError:
        raise Refused("EOF") from None
    except ValueError as exc:
        raise Refused(str(exc)) from None


def _options(body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        if not chat and any(not isinstance(s, str) for s in stop):
            bad = next(s for s in stop if not isinstance(s, str))
            raise Refused(f"invalid type for 'stop' field: {go_type(bad)}")
        options["stop"] = [s for s in stop if isinstance(s, str)]
    if body.get("max_tokens") is not None:
        options["num_predict"] = body["max_tokens"]
    temperature = body.get("temperature")
    options["temperature"] = 1.0 if temperature is None else temperature
    if body.get("seed") is not None:
        options["seed"] = body["seed"]
    if chat:
        for name in ("frequency_penalty", "presence_penalty"):
            if body.get(name) is not None:
                options[name] = body[name]
        top_p = body.get("top_p")
        options["top_p"] = 1.0 if top_p is None else top_p
    else:
        options["frequency_penalty"] = body.get("frequency_penalty") or 0
        options["presence_penalty"] = body.get("presence_penalty") or 0
        options["top_p"] = body.get("top_p") or 1.0
    return options


def _include_usage(body: dict[str, Any]) -> bool:
    stream_options = body.get("stream_options")
    return (
        isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    )


def chat_request(body: Any) -> tuple[dict[str, Any], ChatWriter]:
    """Return ``FromChatRequest``: the native chat request and its writer."""
    body = _bind(
        body,
        "ChatCompletionRequest",
        {
            "model": _STRING,
            "messages": (list, "[]openai.Message"),
            "stream": _BOOL,
            "max_tokens": _INT,
            "seed": _INT,
            "temperature": _FLOAT,
            "top_p": _FLOAT,
            "stream_options": (dict, "openai.StreamOptions"),
        },
    )
    messages = body.get("messages") or []
    if not messages:
        raise Refused("[] is too short - 'messages'")
    native: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise Refused(
                f"json: cannot unmarshal {_json_kind(message)} into Go struct field "
                "ChatCompletionRequest.messages of type openai.Message"
            )
        role = str(message.get("role", ""))
        content = message.get("content")
        if isinstance(content, str):
            native.append({"role": role, "content": content})
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise Refused("invalid message format")
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    native.append({"role": role, "content": part["text"]})
                elif part.get("type") in ("image_url", "input_audio"):
                    native.append({"role": role, "content": "", "images": ["..."]})
                else:
                    raise Refused("invalid message format")
        elif message.get("tool_calls") is not None:
            native.append({"role": role, "content": ""})
        else:
            raise Refused(f"invalid message content type: {go_type(content)}")
    stream = body.get("stream") is True
    payload = {
        "model": body.get("model") or "",
        "messages": native,
        "options": _options(body, chat=True),
        "stream": stream,
    }
    writer = ChatWriter(payload["model"], include_usage=_include_usage(body))
    return payload, writer


def completion_request(body: Any) -> tuple[dict[str, Any], CompleteWriter]:
    """Return ``FromCompleteRequest``: the native generate request and its writer."""
    body = _bind(
        body,
        "CompletionRequest",
        {
            "model": _STRING,
            "prompt": _STRING,
            "stream": _BOOL,
            "max_tokens": _INT,
            "seed": _INT,
            "temperature": _FLOAT,
            "top_p": _FLOAT,
            "suffix": _STRING,
            "stream_options": (dict, "openai.StreamOptions"),
        },
    )
    payload = {
        "model": body.get("model") or "",
        "prompt": body.get("prompt") or "",
        "options": _options(body, chat=False),
        "stream": body.get("stream") is True,
    }
    if body.get("suffix"):
        payload["suffix"] = body["suffix"]
    writer = CompleteWriter(payload["model"], include_usage=_include_usage(body))
    return payload, writer


def embed_request(body: Any) -> tuple[dict[str, Any], EmbedWriter]:
    """Return what ``EmbeddingsMiddleware`` makes of the request, and its writer."""
    body = _bind(
        body,
        "EmbedRequest",
        {"model": _STRING, "dimensions": _INT, "encoding_format": _STRING},
    )
    encoding = body.get("encoding_format") or ""
    if encoding and encoding.lower() not in ("float", "base64"):
        raise Refused(
            f"Invalid value for 'encoding_format' = {encoding}. Supported values: "
            "['float', 'base64']."
        )
    value = body.get("input")
    if value == "":
        value = [""]
    if value is None or value == []:
        raise Refused("invalid input")
    payload: dict[str, Any] = {"model": body.get("model") or "", "input": value}
    if body.get("dimensions"):
        payload["dimensions"] = body["dimensions"]
    return payload, EmbedWriter(payload["model"], encoding)


# ------------------------------------------------------- models, listed


def owned_by(name: str) -> str:
    """Return ``model.ParseName(name).Namespace``: "library" unless it names one."""
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    parts = name.split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2] else "library"


def model_list(entries: list[tuple[str, int]]) -> Response:
    """Return ``ToListCompletion`` of (name, modified Unix seconds), in order."""
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": owned_by(name)}
        for name, created in entries
    ]
    return _encoded({"object": "list", "data": data or None})


def model_entry(name: str, created: int) -> Response:
    """Return ``ToModel``: one model, named as the path named it."""
    return _encoded(
        {"id": name, "object": "model", "created": created, "owned_by": owned_by(name)}
    )


__all__ = [
    "EVENT_STREAM",
    "ChatWriter",
    "CompleteWriter",
    "EmbedWriter",
    "Refused",
    "chat_request",
    "completion_request",
    "embed_request",
    "error_body",
    "middleware_error",
    "model_entry",
    "model_list",
    "owned_by",
    "read_body",
    "writer_error",
]

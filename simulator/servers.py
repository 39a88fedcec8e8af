"""Simulated inference servers other than Ollama: llama.cpp's llama-server, vLLM,
SGLang, TGI, LM Studio, LocalAI, each answering as its source does.

What each says, and where from (read in each project's source; see
network/servers.py): /v1/models (llama.cpp's with its `meta` and Ollama-shaped
`models`, vLLM's with `root`, `max_model_len` and `permission`, TGI's with
`created` 0 and `owned_by` the model, LocalAI's with only id and object),
llama-server's /health, /props and /slots, and the Prometheus /metrics page
of those that have one (names, types and HELP texts of their source; vLLM's
and SGLang's label sets). A chat completion takes `generation_seconds`, holding
a slot meanwhile (llama.cpp: beyond its slots, requests are deferred), and its
tokens go into the counters, so a prober sees slots busy and counters rise.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

from simulator.httpserver import (
    HttpConnection,
    Later,
    Listener,
    Outcome,
    Request,
    Response,
    Site,
    json_response,
)
from simulator.loops import ListeningServer, on_loop
from simulator.ollama import _require_loopback, new_event_loop

KINDS = ("llamacpp", "vllm", "sglang", "tgi", "lmstudio", "localai")
LLAMACPP_BUILD = "b7310-0c1e57098"
METRICS_TYPE = "text/plain; version=0.0.4"

# llama.cpp's families (tools/server/server-task.cpp, to_metrics), counters first.
_LLAMACPP_FAMILIES = (
    ("prompt_tokens_total", "counter", "Number of prompt tokens processed, excluding cached tokens"),  # noqa: E501
    ("prompt_tokens_cached_total", "counter", "Number of prompt tokens reused from the cache"),  # noqa: E501
    ("prompt_seconds_total", "counter", "Total time spent processing prompts"),
    ("tokens_predicted_total", "counter", "Number of generation tokens processed"),
    ("tokens_predicted_seconds_total", "counter", "Total time spent generating tokens"),
    ("n_decode_total", "counter", "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding"),  # noqa: E501
    ("n_tokens_max", "counter", "Largest observed sequence length (prompt + generation)"),  # noqa: E501
    ("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s"),
    ("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s"),
    ("requests_processing", "gauge", "Number of requests processing"),
    ("requests_deferred", "gauge", "Number of requests deferred"),
    ("n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() call"),  # noqa: E501
)  # fmt: skip


class _HttpServer(ListeningServer, Site):
    """A simulated HTTP server on host:port (port 0: any free one)."""

    listener_class = Listener
    protocol_class = HttpConnection
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class SimulatedServer(_HttpServer):
    """One simulated server of `kind` serving `model`."""

    def __init__(
        self,
        kind: str,
        host: str = "127.0.0.2",
        port: int = 0,
        *,
        model: str = "tiny-llama",
        slots: int = 2,
        context: int = 4096,
        generation_seconds: float = 0.0,
        tokens_per_reply: int = 16,
        metrics: bool = True,
        slots_endpoint: bool = True,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"no simulated kind {kind!r} ({', '.join(KINDS)})")
        _require_loopback(host)
        super().__init__()
        self.kind = kind
        self.host = host
        self.port = port
        self.model = model
        self.slots = slots
        self.context = context
        self.generation_seconds = generation_seconds
        self.tokens_per_reply = tokens_per_reply
        self.metrics_enabled = metrics
        self.slots_endpoint = slots_endpoint
        self.loading = False  # llama.cpp: every path answers 503 "Loading model"
        self.metrics_page: bytes | None = None  # a page to serve instead (faults)
        self.running = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.requests = 0

    @on_loop
    def set_loading(self, on: bool) -> None:
        self.loading = on

    @on_loop
    def set_metrics_page(self, page: bytes | None) -> None:
        self.metrics_page = page

    @on_loop
    def set_model(self, model: str) -> None:
        """Serve another model (a server restarted with another -m)."""
        self.model = model

    @on_loop
    def restart_counters(self) -> None:
        """As a restarted server: its counters begin again."""
        self.prompt_tokens = self.generated_tokens = self.requests = 0

    # ------------------------------------------------------------------ HTTP

    def dispatch(self, request: Request) -> Outcome:
        if self.loading and self.kind == "llamacpp":
            return _llamacpp_error(503, "Loading model", "unavailable_error")
        if request.method == "POST" and request.path in (
            "/v1/chat/completions",
            "/v1/completions",
        ):
            self.running += 1
            return Later(self.generation_seconds)
        return self.respond(request)

    def respond(self, request: Request) -> Response:
        path, method = request.path, request.method
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            return self._complete(request)
        if method != "GET":
            return self._not_found()
        answer = {
            "/v1/models": self._models,
            "/metrics": self._metrics,
        }
        if self.kind == "llamacpp":
            answer.update(
                {
                    "/health": lambda: json_response(200, {"status": "ok"}),
                    "/props": self._props,
                    "/slots": self._slots,
                    "/models": self._models,
                }
            )
        elif self.kind in ("vllm", "tgi", "localai"):
            answer["/health"] = lambda: Response(200)
        if self.kind == "vllm":
            answer["/version"] = lambda: json_response(200, {"version": "0.34.0"})
        handler = answer.get(path)
        return handler() if handler else self._not_found()

    def _not_found(self) -> Response:
        if self.kind == "llamacpp":
            return _llamacpp_error(404, "File Not Found", "not_found_error")
        return json_response(404, {"detail": "Not Found"})

    def _complete(self, request: Request) -> Response:
        self.running = max(0, self.running - 1)
        try:
            body = request.json()
        except (EOFError, ValueError):
            return json_response(400, {"error": {"message": "invalid JSON"}})
        messages = body.get("messages") if isinstance(body, dict) else None
        text = " ".join(
            str(m.get("content", "")) for m in messages or [] if isinstance(m, dict)
        )
        prompt = max(1, len(text.split()))
        self.prompt_tokens += prompt
        self.generated_tokens += self.tokens_per_reply
        self.requests += 1
        return json_response(
            200,
            {
                "id": f"chatcmpl-{self.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"Simulated {self.kind} reply",
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": self.tokens_per_reply,
                    "total_tokens": prompt + self.tokens_per_reply,
                },
            },
        )

    def _models(self) -> Response:
        now = int(time.time())
        if self.kind == "llamacpp":
            entry = {
                "id": self.model,
                "aliases": [],
                "tags": [],
                "object": "model",
                "created": now,
                "owned_by": "llamacpp",
                "meta": {
                    "vocab_type": 1,
                    "n_vocab": 265,
                    "n_ctx": self.context,
                    "n_ctx_train": self.context,
                    "n_embd": 64,
                    "n_params": 120_000,
                    "size": 481_280,
                    "ftype": "all F32",
                },
            }
            ollama_shaped = {
                "name": self.model,
                "model": self.model,
                "modified_at": "",
                "size": "",
                "digest": "",
                "type": "model",
                "description": "",
                "tags": [""],
                "capabilities": ["completion"],
                "parameters": "",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "",
                    "families": [""],
                    "parameter_size": "",
                    "quantization_level": "",
                },
            }
            return json_response(
                200, {"models": [ollama_shaped], "object": "list", "data": [entry]}
            )
        if self.kind == "vllm":
            entry = {
                "id": self.model,
                "object": "model",
                "created": now,
                "owned_by": "vllm",
                "root": self.model,
                "parent": None,
                "max_model_len": self.context,
                "permission": [
                    {
                        "id": "modelperm-0",
                        "object": "model_permission",
                        "created": now,
                        "allow_create_engine": False,
                        "allow_sampling": True,
                        "allow_logprobs": True,
                        "allow_search_indices": False,
                        "allow_view": True,
                        "allow_fine_tuning": False,
                        "organization": "*",
                        "group": None,
                        "is_blocking": False,
                    }
                ],
            }
        elif self.kind == "tgi":
            entry = {
                "id": self.model,
                "object": "model",
                "created": 0,
                "owned_by": self.model,
            }
        elif self.kind == "localai":
            entry = {"id": self.model, "object": "model"}
        elif self.kind == "lmstudio":
            entry = {
                "id": self.model,
                "object": "model",
                "owned_by": "organization_owner",
            }
        else:  # sglang
            entry = {
                "id": self.model,
                "object": "model",
                "created": now,
                "owned_by": "sglang",
                "root": self.model,
                "max_model_len": self.context,
            }
        return json_response(200, {"object": "list", "data": [entry]})

    def _props(self) -> Response:
        return json_response(
            200,
            {
                "default_generation_settings": {
                    "params": {"temperature": 0.8, "top_k": 40, "n_predict": -1},
                    "n_ctx": self.context,
                },
                "total_slots": self.slots,
                "model_alias": self.model,
                "model_path": f"/models/{self.model}.gguf",
                "modalities": {"vision": False, "video": False, "audio": False},
                "endpoint_slots": self.slots_endpoint,
                "endpoint_props": False,
                "endpoint_metrics": self.metrics_enabled,
                "chat_template": "",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "build_info": LLAMACPP_BUILD,
                "is_sleeping": False,
            },
        )

    def _slots(self) -> Response:
        if not self.slots_endpoint:
            return _llamacpp_error(
                501,
                "This server does not support slots endpoint. Start it with `--slots`",
                "not_supported_error",
            )
        busy = min(self.running, self.slots)
        return json_response(
            200,
            [
                {
                    "id": index,
                    "n_ctx": self.context,
                    "speculative": False,
                    "is_processing": index < busy,
                }
                for index in range(self.slots)
            ],
        )

    def _metrics(self) -> Response:
        if self.metrics_page is not None:
            return Response(200, self.metrics_page, METRICS_TYPE)
        if self.kind == "llamacpp":
            if not self.metrics_enabled:
                return _llamacpp_error(
                    501,
                    "This server does not support metrics endpoint. Start it with "
                    "`--metrics`",
                    "not_supported_error",
                )
            return Response(200, self._llamacpp_metrics(), METRICS_TYPE)
        if self.kind == "vllm":
            return Response(200, self._labelled_metrics("vllm"), METRICS_TYPE)
        if self.kind == "sglang" and self.metrics_enabled:
            return Response(200, self._labelled_metrics("sglang"), METRICS_TYPE)
        if self.kind == "tgi":
            page = (
                "# TYPE tgi_queue_size gauge\n"
                f"tgi_queue_size {max(0, self.running - self.slots)}\n"
                "# TYPE tgi_batch_current_size gauge\n"
                f"tgi_batch_current_size {min(self.running, self.slots)}\n"
                "# TYPE tgi_request_count counter\n"
                f"tgi_request_count {self.requests}\n"
            )
            return Response(200, page.encode(), METRICS_TYPE)
        return self._not_found()

    def _llamacpp_metrics(self) -> bytes:
        processing = min(self.running, self.slots)
        values = {
            "prompt_tokens_total": self.prompt_tokens,
            "prompt_tokens_cached_total": 0,
            "prompt_seconds_total": round(self.prompt_tokens / 2000, 3),
            "tokens_predicted_total": self.generated_tokens,
            "tokens_predicted_seconds_total": round(self.generated_tokens / 500, 3),
            "n_decode_total": self.generated_tokens,
            "n_tokens_max": min(self.context, 64),
            "prompt_tokens_seconds": 2000 if self.requests else 0,
            "predicted_tokens_seconds": 500 if self.requests else 0,
            "requests_processing": processing,
            "requests_deferred": self.running - processing,
            "n_busy_slots_per_decode": processing,
        }
        lines = []
        for name, kind, text in _LLAMACPP_FAMILIES:
            lines += [
                f"# HELP llamacpp:{name} {text}",
                f"# TYPE llamacpp:{name} {kind}",
                f"llamacpp:{name} {values[name]}",
            ]
        return ("\n".join(lines) + "\n").encode()

    def _labelled_metrics(self, prefix: str) -> bytes:
        if prefix == "vllm":
            labels = f'engine="0",model_name="{self.model}"'
            families = (
                ("num_requests_running", "gauge", "Number of requests in model execution batches.", min(self.running, self.slots)),  # noqa: E501
                ("num_requests_waiting", "gauge", "Number of requests waiting to be processed.", max(0, self.running - self.slots)),  # noqa: E501
                ("kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", round(min(self.running, self.slots) / max(1, self.slots), 3)),  # noqa: E501
                ("prompt_tokens_total", "counter", "Number of prefill tokens processed.", float(self.prompt_tokens)),  # noqa: E501
                ("generation_tokens_total", "counter", "Number of generation tokens processed.", float(self.generated_tokens)),  # noqa: E501
            )  # fmt: skip
        else:
            labels = (
                f'engine_type="unified",model_name="{self.model}",'
                'moe_ep_rank="0",pp_rank="0",tp_rank="0"'
            )
            families = (
                ("num_running_reqs", "gauge", "The number of running requests.", float(min(self.running, self.slots))),  # noqa: E501
                ("num_queue_reqs", "gauge", "The number of requests in the waiting queue.", float(max(0, self.running - self.slots))),  # noqa: E501
                ("token_usage", "gauge", "The token usage.", round(min(self.running, self.slots) / max(1, self.slots), 3)),  # noqa: E501
                ("prompt_tokens_total", "counter", "Number of prefill tokens processed.", float(self.prompt_tokens)),  # noqa: E501
                ("generation_tokens_total", "counter", "Number of generation tokens processed.", float(self.generated_tokens)),  # noqa: E501
            )  # fmt: skip
        lines = []
        for name, kind, text, value in families:
            lines += [
                f"# HELP {prefix}:{name} {text}",
                f"# TYPE {prefix}:{name} {kind}",
                f"{prefix}:{name}{{{labels}}} {value}",
            ]
        return ("\n".join(lines) + "\n").encode()


def _llamacpp_error(status: int, message: str, kind: str) -> Response:
    return json_response(
        status, {"error": {"code": status, "message": message, "type": kind}}
    )


@contextlib.contextmanager
def running_servers(*servers: SimulatedServer) -> Iterator[tuple[SimulatedServer, ...]]:
    """Run servers on a background thread's loop for synchronous code."""
    loop = new_event_loop()
    thread = threading.Thread(
        target=loop.run_forever, name="sollol-simulated-servers", daemon=True
    )
    thread.start()
    try:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
        yield servers
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()


__all__ = ["KINDS", "SimulatedGpuExporter", "SimulatedServer", "running_servers"]


def _go_float(value: float) -> str:
    """A float as Go's strconv.FormatFloat(v, 'g', -1, 64) writes a large one
    (8.589934592e+09), as Prometheus' Go client does."""
    mantissa, exponent = f"{float(value):.16e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


class SimulatedGpuExporter(_HttpServer):
    """A GPU exporter's /metrics: NVIDIA's DCGM exporter ("dcgm") or
    utkuozdemir/nvidia_gpu_exporter ("nvidia_smi"), as their source writes them
    (etc/default-counters.csv and render_metrics.go; exporter.go and its test
    data). `gpus` is [(name, total bytes, used bytes)]; set_used changes one."""

    def __init__(
        self,
        flavour: str,
        host: str = "127.0.0.2",
        port: int = 0,
        *,
        gpus: list[tuple[str, int, int]] | None = None,
    ) -> None:
        if flavour not in ("dcgm", "nvidia_smi"):
            raise ValueError(f"no GPU exporter {flavour!r} (dcgm, nvidia_smi)")
        _require_loopback(host)
        super().__init__()
        self.kind = flavour
        self.host = host
        self.port = port
        self.gpus = [
            list(gpu)
            for gpu in gpus or [("NVIDIA GeForce RTX 4090", 24 * 2**30, 2**30)]
        ]  # noqa: E501

    @on_loop
    def set_used(self, index: int, used: int) -> None:
        self.gpus[index][2] = used

    def respond(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/metrics":
            page = self._dcgm() if self.kind == "dcgm" else self._nvidia_smi()
            return Response(200, page.encode(), METRICS_TYPE)
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _dcgm(self) -> str:
        families = (
            ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda t, u: 40 + 40 * u // t),  # noqa: E501
            ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda t, u: round(30 + 300 * u / t, 3)),  # noqa: E501
            ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda t, u: 100 * u // t),  # noqa: E501
            ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", lambda t, u: (t - u) // 2**20 - 512),  # noqa: E501
            ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda t, u: u // 2**20),  # noqa: E501
            ("DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved (in MiB).", lambda t, u: 512),  # noqa: E501
        )  # fmt: skip
        lines = []
        for name, text, value in families:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
            for index, (model, total, used) in enumerate(self.gpus):
                labels = (
                    f'gpu="{index}",UUID="GPU-{index:08x}-0000-0000-0000-000000000000",'
                    f'pci_bus_id="00000000:0{index + 1}:00.0",device="nvidia{index}",'
                    f'modelName="{model}",Hostname="gpu-box"'
                )
                lines.append(f"{name}{{{labels}}} {value(total, used)}")
        return "\n".join(lines) + "\n"

    def _nvidia_smi(self) -> str:
        # (its HELP text is not in the notes this was written from: left out)
        lines = ["# TYPE nvidia_smi_gpu_info gauge"]
        for index, (model, _, _) in enumerate(self.gpus):
            uuid = f"{index:08x}-0000-0000-0000-000000000000"
            lines.append(
                f'nvidia_smi_gpu_info{{compute_cap="8.9",driver_model_current="",'
                f'driver_model_pending="",driver_version="595.71.05",index="{index}",'
                f'name="{model}",uuid="{uuid}",vbios_version="95.02.18.80.5f"}} 1'
            )
        families = (
            ("memory_total_bytes", "memory.total [MiB]", lambda t, u: _go_float(t)),
            ("memory_used_bytes", "memory.used [MiB]", lambda t, u: _go_float(u)),
            ("power_draw_watts", "power.draw [W]", lambda t, u: round(30 + 300 * u / t, 2)),  # noqa: E501
            ("temperature_gpu", "temperature.gpu", lambda t, u: 40 + 40 * u // t),
            ("utilization_gpu_ratio", "utilization.gpu [%]", lambda t, u: round(u / t, 2)),  # noqa: E501
        )  # fmt: skip
        for name, text, value in families:
            lines += [
                f"# HELP nvidia_smi_{name} {text}",
                f"# TYPE nvidia_smi_{name} gauge",
            ]  # noqa: E501
            for index, (_, total, used) in enumerate(self.gpus):
                uuid = f"{index:08x}-0000-0000-0000-000000000000"
                lines.append(f'nvidia_smi_{name}{{uuid="{uuid}"}} {value(total, used)}')
        return "\n".join(lines) + "\n"

from django.db import models

from activity import streams


class NodeStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"  # found, not probed yet
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"  # answers, but slowly or with errors
    UNHEALTHY = "unhealthy", "Unhealthy"  # failed the last probe
    OFFLINE = "offline", "Offline"  # failed several probes in a row
    # Outside SOLLOL_ALLOWED_NODE_CIDRS: never contacted.
    REJECTED = "rejected", "Rejected"
    FLAPPING = "flapping", "Flapping"  # keeps changing; quiet until it settles
    # Answers 401 or 403: the dashboard's credentials are missing or refused.
    UNAUTHORIZED = "unauthorized", "Unauthorized"
    # Only guessed (SOLLOL_DISCOVER_LOCALHOST) and never answered: not down.
    NOT_FOUND = "not_found", "Not found"


class NodeKind(models.TextChoices):
    """What kind of inference server a node is (core.addresses.KIND_PORTS)."""

    OLLAMA = "ollama", "Ollama"
    LLAMACPP = "llamacpp", "llama.cpp llama-server"
    VLLM = "vllm", "vLLM"
    SGLANG = "sglang", "SGLang"
    TGI = "tgi", "Text Generation Inference"
    LMSTUDIO = "lmstudio", "LM Studio"
    LOCALAI = "localai", "LocalAI"
    OPENAI = "openai", "OpenAI-compatible"
    # Declared without a kind (SOLLOL_NODES): its first answers tell (network.servers
    # detect_kind), and it is stored as that.
    UNKNOWN = "", "Not known yet"


class BackendStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    ONLINE = "online", "Online"
    BUSY = "busy", "Busy"  # accepts, but serves another client
    OFFLINE = "offline", "Offline"
    # Was busy, and has given no proof of life for SOLLOL_RPC_BUSY_MAX: its connects
    # time out as a busy server's do, but no coordinator is known to be using it.
    UNREACHABLE = "unreachable", "Unreachable"
    INCOMPATIBLE = "incompatible", "Incompatible"  # speaks something else
    # Outside SOLLOL_ALLOWED_NODE_CIDRS: never contacted.
    REJECTED = "rejected", "Rejected"
    # Only guessed (SOLLOL_DISCOVER_LOCALHOST) and never answered: not down.
    NOT_FOUND = "not_found", "Not found"


class Source(models.TextChoices):
    """How the dashboard learned of a node or backend."""

    CONFIG = "config", "Configuration"
    LOCALHOST = "localhost", "Localhost"
    APPLICATION = "application", "Reported by an application"
    API = "api", "Added through the API"
    SCAN = "scan", "Subnet scan"


NODE_STREAM = streams.register("nodes", "Ollama nodes")
BACKEND_STREAM = streams.register("backends", "RPC backends")

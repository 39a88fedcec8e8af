"""Settings for the SOLLOL dashboard: embedded defaults, production through the env.

Every knob an operator may turn is an environment variable (the README's
Configuration). Without any of them the dashboard runs in one process on SQLite
with an in-memory channel layer.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core import dbpool

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SOLLOL_DATA_DIR", BASE_DIR / "data"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_float(name: str, default: float) -> float:
    value = env_str(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_int(name: str, default: int) -> int:
    return int(env_float(name, default))


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    key = env_str("SOLLOL_SECRET_KEY")
    if key:
        # Django's own bar for a key (security.W009), and not deploy/'s example
        # left as it was: a weak key is refused at start, not found by
        # `check --deploy` after sessions were signed with it.
        weak = len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure")
        if weak or "change-me" in key:
            raise ImproperlyConfigured(
                "SOLLOL_SECRET_KEY must be 50 or more random characters, e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
            )
        return key
    # Embedded mode: one random key per data directory, kept across restarts so
    # sessions of the admin survive a restart.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("SOLLOL_DEBUG", False)

SOLLOL_HOST = env_str("SOLLOL_HOST", "127.0.0.1")
SOLLOL_PORT = env_int("SOLLOL_PORT", 8080)
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS_FROM_ENV = bool(env_list("SOLLOL_ALLOWED_HOSTS"))
ALLOWED_HOSTS = env_list("SOLLOL_ALLOWED_HOSTS") or (
    ["*"] if SOLLOL_HOST in {"0.0.0.0", "::"} else [*LOOPBACK_HOSTS, SOLLOL_HOST]
)

# The page is served over HTTPS, TLS ending at the proxy in front (deploy/nginx,
# which sets X-Forwarded-Proto): cookies are sent over HTTPS only, and a browser
# asking for a page over plain HTTP is sent to HTTPS. Machine paths (the API, OTLP,
# /metrics) are not redirected: a client's POST must not turn into a GET.
SOLLOL_HTTPS = env_bool("SOLLOL_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SOLLOL_HTTPS
SECURE_SSL_REDIRECT = SOLLOL_HTTPS
SECURE_REDIRECT_EXEMPT = [r"^api/", r"^v1/", r"^metrics$"]
if SOLLOL_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTP Strict Transport Security, with SOLLOL_HTTPS: how long browsers keep to
# HTTPS for this name (0: no header), and whether for its subdomains and the
# browsers' preload lists too. Raise it once HTTPS works; lowering it later does
# not reach browsers that remember it.
SECURE_HSTS_SECONDS = env_int("SOLLOL_HSTS_SECONDS", 0) if SOLLOL_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SOLLOL_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SOLLOL_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here, not a CDN
    "channels",
    "django_prometheus",
    "sollol_site",
    "activity",
    "applications",
    "network",
    "frameworks",
    "alerts",
]

MIDDLEWARE = [
    # The dashboard's own HTTP metrics at /metrics (this process's requests through
    # Django; the lean ingest lane and WebSockets bypass middleware).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "sollol_site.middleware.JsonErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "sollol_site.middleware.ReadAccessMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "sollol_site.urls"
ASGI_APPLICATION = "sollol_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _databases() -> dict:
    url = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'sollol.sqlite3'}"
    database = dj_database_url.parse(url)
    if database["ENGINE"] == "django.db.backends.sqlite3":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        database["OPTIONS"] = {
            # IMMEDIATE takes the write lock at BEGIN: no deadlocked lock upgrades,
            # and event ids are handed out in commit order.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        database["TEST"] = {"NAME": str(DATA_DIR / "test_sollol.sqlite3")}
    elif database["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI CONN_MAX_AGE gives no reuse; psycopg's pool does (PERF-NOTES.md).
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"] = {
            "pool": {
                "min_size": 1,
                "max_size": env_int("SOLLOL_DB_POOL_SIZE", 20),
                # With the database away, a request waited psycopg's default 30 s
                # for a pooled connection before its 503 (bench/faults.py).
                "timeout": env_float("SOLLOL_DB_POOL_TIMEOUT", 5.0),
            },
            "connect_timeout": 3,
        }
        # psycopg_pool's reconnect backoff has no ceiling (core/dbpool.py).
        dbpool.cap_reconnect_delay(env_float("SOLLOL_DB_RECONNECT_MAX_DELAY", 1.0))
    return {"default": database}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# The dashboard's own CSS and JavaScript (no build step); served by
# ASGIStaticFilesHandler in sollol_site/asgi.py whatever DEBUG says.
STATICFILES_DIRS = [BASE_DIR / "static"]

REDIS_URL = env_str("REDIS_URL")
CHANNEL_PREFIX = env_str("SOLLOL_CHANNEL_PREFIX", "sollol")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s
                # a consumer blocks in BZPOPMIN waiting for messages: an idle
                # consumer then lost the race now and then and died with "Timeout
                # reading from ..." (tests/test_scaleout.py). Reads may take longer
                # than the blocking wait; connecting may not.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "socket_connect_timeout": 2,
                    }
                ],
                "prefix": CHANNEL_PREFIX,
                "capacity": 1000,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["core.tokens.WriteTokenRequired"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "core.api.json_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.JsonApiSchema",
}
# The OpenAPI schema at /api/schema/, Swagger UI at /api/schema/swagger/ (its
# files from drf-spectacular-sidecar: no CDN).
SPECTACULAR_SETTINGS = {
    "TITLE": "SOLLOL Unified Dashboard API",
    "DESCRIPTION": "Fleet state, the application registry and activity.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["sollol_site.schema.drop_slash_aliases"],
    # One name for each set of choices the answers' serializers share.
    "ENUM_NAME_OVERRIDES": {
        "NodeStatusEnum": "network.choices.NodeStatus",
        "BackendStatusEnum": "network.choices.BackendStatus",
        "AppStatusEnum": "applications.choices.AppStatus",
        "SeverityEnum": "alerts.choices.Severity",
        "ChannelKindEnum": "alerts.choices.ChannelKind",
        "FrameworkStatusEnum": "frameworks.choices.FrameworkStatus",
        "FrameworkMetricsStatusEnum": "frameworks.api.schemas.STATUSES",
        "HealthStatusEnum": "sollol_site.schemas.HEALTH_STATUSES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sollol_site.schema.add_lean_lane",
    ],
}

# Bodies larger than this are refused with 413 on every lane.
SOLLOL_MAX_BODY_BYTES = env_int("SOLLOL_MAX_BODY_BYTES", 256 * 1024)
# POST /api/traces, /v1/traces and /v1/logs: an SDK's batch of 512, uncompressed.
SOLLOL_MAX_TRACE_BODY_BYTES = env_int("SOLLOL_MAX_TRACE_BODY_BYTES", 4 * 1024 * 1024)
# Django's own cap; the lean router has already refused what is over each path's.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(SOLLOL_MAX_BODY_BYTES, SOLLOL_MAX_TRACE_BODY_BYTES)

# Writes need "Authorization: Bearer <token>" when any token is set; several tokens
# (comma-separated) allow rotation.
SOLLOL_API_TOKENS = env_list("SOLLOL_API_TOKEN")
# When set, reads (the page, GET /api/..., /metrics, the streams) need a read or
# write token as a bearer, or a signed-in staff user or viewer (a user in the
# "viewers" group; the page sends people to /login/). Unset, reads are open, as on
# a loopback-only dashboard.
SOLLOL_READ_TOKENS = env_list("SOLLOL_READ_TOKEN")
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# Browser origins (scheme://host:port) allowed to write from another site; writes
# that carry any other Origin than the dashboard's own are refused (403).
SOLLOL_TRUSTED_ORIGINS = frozenset(env_list("SOLLOL_TRUSTED_ORIGINS"))
# Writes (POST/PUT/PATCH/DELETE under /api/ and /v1/) per client address (per
# server process unless SOLLOL_RATE_LIMITS is redis): a sustained rate and a
# burst; 0 turns the limit off. 429 + Retry-After.
# A guard against floods, not against one app: many well-behaved apps share one
# address (a NAT, a Kubernetes node, a host of agents), so the default lets 5,000
# apps there heartbeat every second and report their requests.
SOLLOL_WRITE_RATE = env_float("SOLLOL_WRITE_RATE", 20000.0)
SOLLOL_WRITE_BURST = env_float("SOLLOL_WRITE_BURST", 40000.0)
# Per application (its app_id): registrations and heartbeats a second and burst
# (shared as the above). One app in a tight loop is slowed (429 + Retry-After, which
# DashboardClient honours), its neighbours behind the same address are not.
SOLLOL_APP_WRITE_RATE = env_float("SOLLOL_APP_WRITE_RATE", 10.0)
SOLLOL_APP_WRITE_BURST = env_float("SOLLOL_APP_WRITE_BURST", 50.0)
# Per application: requests that report its work (POST /api/activity, /api/logs,
# /api/traces, OTLP's /v1/logs and /v1/traces; the app is the report's app_id, a
# span's service) a second and burst, each request charged once for every
# application in it. A client sends a batch every second or so; one looping
# over single lines is slowed (429 + Retry-After), its neighbours are not.
SOLLOL_APP_REPORT_RATE = env_float("SOLLOL_APP_REPORT_RATE", 50.0)
SOLLOL_APP_REPORT_BURST = env_float("SOLLOL_APP_REPORT_BURST", 500.0)
# Application ids new to a server process (not seen writing lately) a second and
# burst per client address: 10,000 apps behind one address may register at once (a
# deploy, a dashboard restart, a network coming back), then 100 new ids a second;
# a flood of invented ids stops there (429 + Retry-After), and for good at
# SOLLOL_MAX_APPS_PER_TOKEN. Apps already writing are never charged. Applies while
# the per-application limit is on.
SOLLOL_NEW_APP_RATE = env_float("SOLLOL_NEW_APP_RATE", 100.0)
SOLLOL_NEW_APP_BURST = env_float("SOLLOL_NEW_APP_BURST", 10_000.0)
# Writes without a valid token (SOLLOL_API_TOKEN set), a second and burst per
# client address: past it they get 429 instead of 401/403, while writes with a
# valid token from the same address pass as ever.
SOLLOL_AUTH_FAILURE_RATE = env_float("SOLLOL_AUTH_FAILURE_RATE", 2.0)
SOLLOL_AUTH_FAILURE_BURST = env_float("SOLLOL_AUTH_FAILURE_BURST", 60.0)
# Seconds a request's whole body may take to arrive (then 408).
SOLLOL_BODY_TIMEOUT = env_float("SOLLOL_BODY_TIMEOUT", 30.0)
# Sign-in attempts (/login/ and the admin's form) per second and burst per address.
SOLLOL_LOGIN_RATE = env_float("SOLLOL_LOGIN_RATE", 0.2)
SOLLOL_LOGIN_BURST = env_float("SOLLOL_LOGIN_BURST", 10.0)
# Where the limits above are kept: "redis" (REDIS_URL: one bucket a client for
# every server process, core.ratelimit) or "memory" (each process its own).
SOLLOL_RATE_LIMITS = env_str("SOLLOL_RATE_LIMITS", "redis" if REDIS_URL else "memory")
if SOLLOL_RATE_LIMITS not in ("redis", "memory"):
    raise ImproperlyConfigured("SOLLOL_RATE_LIMITS must be redis or memory")
if SOLLOL_RATE_LIMITS == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("SOLLOL_RATE_LIMITS=redis needs REDIS_URL")
# An application's metadata (as JSON, after heartbeats merged into it) and nesting.
SOLLOL_MAX_METADATA_BYTES = env_int("SOLLOL_MAX_METADATA_BYTES", 64 * 1024)
SOLLOL_METADATA_MAX_DEPTH = env_int("SOLLOL_METADATA_MAX_DEPTH", 8)
# Applications one write token may have registered at once (without tokens: all).
SOLLOL_MAX_APPS_PER_TOKEN = env_int("SOLLOL_MAX_APPS_PER_TOKEN", 50_000)

SOLLOL_APP_STALE_AFTER = env_float("SOLLOL_APP_STALE_AFTER", 30.0)
SOLLOL_APP_REMOVE_AFTER = env_float("SOLLOL_APP_REMOVE_AFTER", 60.0)
# The sweep runs on its own this often (at most half the stale timeout), and a
# deadline that falls between two runs gets a run of its own at that moment
# (applications.tasks): 17,280 runs a day at the default, not 86,400, and an app
# is still marked stale within a fraction of a second of its deadline.
SOLLOL_APP_SWEEP_INTERVAL = env_float("SOLLOL_APP_SWEEP_INTERVAL", 5.0)
APP_SWEEP_EVERY = min(SOLLOL_APP_SWEEP_INTERVAL, SOLLOL_APP_STALE_AFTER / 2)
# How often viewers hear which apps sent a heartbeat (quiet ones make no event).
SOLLOL_APP_SAMPLE_INTERVAL = env_float("SOLLOL_APP_SAMPLE_INTERVAL", 5.0)
if SOLLOL_APP_REMOVE_AFTER <= SOLLOL_APP_STALE_AFTER:
    raise ImproperlyConfigured(
        "SOLLOL_APP_REMOVE_AFTER must be longer than SOLLOL_APP_STALE_AFTER"
    )

SOLLOL_EVENT_RETENTION_AGE = env_float("SOLLOL_EVENT_RETENTION_AGE", 7 * 24 * 3600.0)
SOLLOL_EVENT_RETENTION_COUNT = env_int("SOLLOL_EVENT_RETENTION_COUNT", 100_000)
SOLLOL_EVENT_PRUNE_INTERVAL = env_float("SOLLOL_EVENT_PRUNE_INTERVAL", 60.0)
# Requests, reported and through the gateway: raw rows answer GET /api/metrics
# windows up to an hour with exact percentiles, so two hours of them are kept;
# longer windows (up to 30 days) are read from per-minute rollups while those
# reach back far enough, else from hourly and daily ones (activity/rollups.py).
# Prometheus counters live in RequestTotals and GatewayTotals, never pruned.
SOLLOL_REQUEST_RETENTION_AGE = env_float("SOLLOL_REQUEST_RETENTION_AGE", 2 * 3600.0)
SOLLOL_REQUEST_RETENTION_COUNT = env_int("SOLLOL_REQUEST_RETENTION_COUNT", 500_000)
SOLLOL_ROLLUP_MINUTE_RETENTION = env_float(
    "SOLLOL_ROLLUP_MINUTE_RETENTION", 48 * 3600.0
)
# Hourly and daily rollups: the 30-day windows need at least 30 days.
SOLLOL_ROLLUP_HOUR_RETENTION = env_float("SOLLOL_ROLLUP_HOUR_RETENTION", 35 * 86400.0)
if min(SOLLOL_ROLLUP_MINUTE_RETENTION, SOLLOL_ROLLUP_HOUR_RETENTION) <= 0:
    raise ImproperlyConfigured(
        "SOLLOL_ROLLUP_MINUTE_RETENTION and SOLLOL_ROLLUP_HOUR_RETENTION must be "
        "more than 0 seconds"
    )
# History (activity/history.py): nodes', backends', the fleet's, applications'
# and Ray/Dask measurements, kept as taken for RAW seconds, as minutes for MINUTE
# seconds and as hours for HOUR seconds. What no probe measures (the fleet, the
# applications) is measured every SOLLOL_HISTORY_INTERVAL seconds.
SOLLOL_HISTORY_RAW_RETENTION = env_float("SOLLOL_HISTORY_RAW_RETENTION", 2 * 86400.0)
SOLLOL_HISTORY_MINUTE_RETENTION = env_float(
    "SOLLOL_HISTORY_MINUTE_RETENTION", 14 * 86400.0
)
SOLLOL_HISTORY_HOUR_RETENTION = env_float(
    "SOLLOL_HISTORY_HOUR_RETENTION", 365 * 86400.0
)
SOLLOL_HISTORY_INTERVAL = env_float("SOLLOL_HISTORY_INTERVAL", 5.0)
if (
    SOLLOL_HISTORY_INTERVAL <= 0
    # Kept long enough to be summed: a minute's measurements until the minute is
    # rolled up (30 s of grace), an hour's minutes until the hour is.
    or SOLLOL_HISTORY_RAW_RETENTION < 300
    or SOLLOL_HISTORY_MINUTE_RETENTION < 7200
    or not SOLLOL_HISTORY_RAW_RETENTION
    <= SOLLOL_HISTORY_MINUTE_RETENTION
    <= SOLLOL_HISTORY_HOUR_RETENTION
):
    raise ImproperlyConfigured(
        "SOLLOL_HISTORY_INTERVAL must be more than 0 s, SOLLOL_HISTORY_RAW_RETENTION "
        "at least 300 s, SOLLOL_HISTORY_MINUTE_RETENTION at least 7200 s, and "
        "RAW <= MINUTE <= HOUR"
    )
# Log lines: a flood is cut back to the newest COUNT every PRUNE_INTERVAL seconds.
SOLLOL_LOG_RETENTION_AGE = env_float("SOLLOL_LOG_RETENTION_AGE", 3 * 24 * 3600.0)
SOLLOL_LOG_RETENTION_COUNT = env_int("SOLLOL_LOG_RETENTION_COUNT", 200_000)
SOLLOL_ACTIVITY_PRUNE_INTERVAL = env_float("SOLLOL_ACTIVITY_PRUNE_INTERVAL", 10.0)
# The dashboard's own log lines at this level and above go to /ws/logs too.
SOLLOL_CAPTURE_LOGS = env_bool("SOLLOL_CAPTURE_LOGS", True)
SOLLOL_CAPTURE_LOG_LEVEL = env_str("SOLLOL_CAPTURE_LOG_LEVEL", "INFO")

# Periodic work, defined once: Celery beat runs it in production, the embedded
# scheduler inside `manage.py serve` runs the same tasks on the same schedule.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env_str("SOLLOL_CELERY_QUEUE", "sollol")
# One task at a time per worker process, so batches spread over the workers; and a
# task whose worker vanished goes back to the queue after this many seconds (every
# task here ends within a probe timeout or a sweep, far sooner).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60}
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    # First: the embedded scheduler gives the first entry no phase, so its turns
    # stay one interval apart from the start (applications/tasks.py counts on it).
    "sweep-applications": {
        "task": "applications.tasks.sweep_applications",
        "schedule": APP_SWEEP_EVERY,
        "options": {"expires": APP_SWEEP_EVERY},
    },
    "prune-events": {
        "task": "activity.tasks.prune_events",
        "schedule": SOLLOL_EVENT_PRUNE_INTERVAL,
    },
    "prune-activity": {
        "task": "activity.tasks.prune_activity",
        "schedule": SOLLOL_ACTIVITY_PRUNE_INTERVAL,
        "options": {"expires": SOLLOL_ACTIVITY_PRUNE_INTERVAL},
    },
    # The clock by which pages re-read a metrics window that moved on.
    "publish-metrics-sample": {
        "task": "activity.tasks.publish_metrics_sample",
        "schedule": SOLLOL_APP_SAMPLE_INTERVAL,
        "options": {"expires": SOLLOL_APP_SAMPLE_INTERVAL},
    },
}
CELERY_BEAT_SCHEDULE["keep-history"] = {
    "task": "activity.tasks.keep_history",
    "schedule": SOLLOL_HISTORY_INTERVAL,
    "options": {"expires": SOLLOL_HISTORY_INTERVAL},
}
CELERY_BEAT_SCHEDULE["prune-history"] = {
    "task": "activity.tasks.prune_history",
    "schedule": SOLLOL_EVENT_PRUNE_INTERVAL,
}

# The server's log on standard error: lines of text, or JSON objects for log
# shippers (SOLLOL_LOG_FORMAT=json, core/logformat.py).
SOLLOL_LOG_FORMAT = env_str("SOLLOL_LOG_FORMAT", "text").lower()
if SOLLOL_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("SOLLOL_LOG_FORMAT must be text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "core.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if SOLLOL_LOG_FORMAT == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env_str("SOLLOL_LOG_LEVEL", "INFO")},
}

# Network: where nodes and backends come from, and how they are probed.
SOLLOL_OLLAMA_NODES = env_list("SOLLOL_OLLAMA_NODES")
# Nodes of any kind: `llamacpp+http://host:8080`, `vllm+http://host:8000`, ...
# (core.addresses.KIND_PORTS); an entry without a kind is an Ollama node.
SOLLOL_NODES = env_list("SOLLOL_NODES")
# A node's GPU exporter (NVIDIA's DCGM exporter or nvidia_gpu_exporter), read with
# its probes: `host:port=http://exporter:9400`, comma-separated (network.gpus).
SOLLOL_GPU_EXPORTERS = env_list("SOLLOL_GPU_EXPORTERS")
# The operator's labels of nodes and backends, that alert rules and silences are
# scoped by: `<host:port glob>=<name>=<value>;<name>=<value>`, comma-separated
# (`127.0.0.2:11434=rack=a;gpu=a100,127.0.0.3:*=rack=b`). Merged over each one's
# own labels at every sync (network.services.lifecycle); a bad entry is logged.
SOLLOL_NODE_LABELS = env_list("SOLLOL_NODE_LABELS")
# Which llama.cpp coordinator (a llama-server with --rpc) uses which RPC backend:
# `backend_host:port=coordinator_host:port`, comma-separated. Undeclared, a backend
# held busy while one llama.cpp node serves is attributed to that node.
SOLLOL_RPC_COORDINATORS = env_list("SOLLOL_RPC_COORDINATORS")
SOLLOL_RPC_BACKENDS = env_list("SOLLOL_RPC_BACKENDS")
SOLLOL_DISCOVER_LOCALHOST = env_bool("SOLLOL_DISCOVER_LOCALHOST", True)
SOLLOL_DISCOVERY_CIDRS = env_list("SOLLOL_DISCOVERY_CIDRS")
# Nodes and backends added through the API or reported by apps are only contacted
# inside these (network/allowlist.py); the operator's own sources are trusted.
SOLLOL_ALLOWED_NODE_CIDRS = env_list("SOLLOL_ALLOWED_NODE_CIDRS") or [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",  # IPv6 unique local addresses, the private ranges' counterpart
]
for _cidr in SOLLOL_ALLOWED_NODE_CIDRS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"SOLLOL_ALLOWED_NODE_CIDRS: {_exc}") from None
# Applications writing from these networks (register, heartbeat, unregister) need
# no token even when SOLLOL_API_TOKEN is set: for apps that cannot send one.
try:
    SOLLOL_TRUSTED_NETWORKS = [
        ipaddress.ip_network(cidr, strict=False)
        for cidr in env_list("SOLLOL_TRUSTED_NETWORKS")
    ]
except ValueError as _exc:
    raise ImproperlyConfigured(f"SOLLOL_TRUSTED_NETWORKS: {_exc}") from None
# The reverse proxies in front (addresses or CIDRs, e.g. 127.0.0.1 for nginx on this
# machine) whose X-Forwarded-For / X-Forwarded-Proto are believed (core.proxies):
# the client's address, for rate limits, trusted networks and the gateway's
# loopback rule. From any other peer those headers are ignored. Empty: none.
SOLLOL_TRUSTED_PROXIES = env_list("SOLLOL_TRUSTED_PROXIES")
try:
    for _proxy in SOLLOL_TRUSTED_PROXIES:
        ipaddress.ip_network(_proxy, strict=False)
except ValueError as _exc:
    raise ImproperlyConfigured(f"SOLLOL_TRUSTED_PROXIES: {_exc}") from None
SOLLOL_DISCOVERY_RESCAN_INTERVAL = env_float("SOLLOL_DISCOVERY_RESCAN_INTERVAL", 300.0)
SOLLOL_PROBE_INTERVAL = env_float("SOLLOL_PROBE_INTERVAL", 5.0)
SOLLOL_PROBE_TIMEOUT = env_float("SOLLOL_PROBE_TIMEOUT", 2.0)
# A node answering slower than this is degraded (default: half the timeout).
SOLLOL_PROBE_SLOW_AFTER = env_float("SOLLOL_PROBE_SLOW_AFTER", SOLLOL_PROBE_TIMEOUT / 2)
SOLLOL_PROBE_OFFLINE_AFTER = env_int("SOLLOL_PROBE_OFFLINE_AFTER", 3)
SOLLOL_PROBE_RECOVER_AFTER = env_int("SOLLOL_PROBE_RECOVER_AFTER", 2)
# A node that answers its probes is still degraded when routers reported at least
# SOLLOL_REPORTED_MIN_REQUESTS requests to it in the last SOLLOL_REPORTED_WINDOW
# seconds and this share of them failed (Ollama's 503 "server busy" comes only to
# inference requests). A window of 0 turns it off.
SOLLOL_REPORTED_WINDOW = env_float("SOLLOL_REPORTED_WINDOW", 60.0)
SOLLOL_REPORTED_MIN_REQUESTS = env_int("SOLLOL_REPORTED_MIN_REQUESTS", 5)
SOLLOL_REPORTED_FAILURE_RATE = env_float("SOLLOL_REPORTED_FAILURE_RATE", 0.5)
SOLLOL_PROBE_TAGS_INTERVAL = env_float("SOLLOL_PROBE_TAGS_INTERVAL", 60.0)
SOLLOL_PROBE_CONCURRENCY = env_int("SOLLOL_PROBE_CONCURRENCY", 256)
SOLLOL_RPC_SESSION_INTERVAL = env_float("SOLLOL_RPC_SESSION_INTERVAL", 30.0)
# Seconds a busy RPC backend may go without answering, when no coordinator serving
# with it says it is in use, before it is called unreachable (its host may be gone).
SOLLOL_RPC_BUSY_MAX = env_float("SOLLOL_RPC_BUSY_MAX", 600.0)
SOLLOL_NODE_HISTORY = env_int("SOLLOL_NODE_HISTORY", 50)
# Flap detection: every probe multiplies a node's score by DECAY, every change of
# the status a probe gives adds 1. At START the node is "flapping" (one event, then
# quiet); below END it takes the status of its probes again. Changing every probe,
# a node is flapping after its 5th change; settled, it leaves 9 probes later.
SOLLOL_FLAP_DECAY = env_float("SOLLOL_FLAP_DECAY", 0.8)
SOLLOL_FLAP_START = env_float("SOLLOL_FLAP_START", 3.0)
SOLLOL_FLAP_END = env_float("SOLLOL_FLAP_END", 1.0)
# 0: the beat task probes everything itself (embedded mode). N > 0: it enqueues
# batches of N nodes (and N backends) that any number of Celery workers share.
SOLLOL_PROBE_SHARD_SIZE = env_int("SOLLOL_PROBE_SHARD_SIZE", 0)

CELERY_BEAT_SCHEDULE["probe-network"] = {
    "task": "network.tasks.probe_network",
    "schedule": SOLLOL_PROBE_INTERVAL,
    "options": {"expires": SOLLOL_PROBE_INTERVAL},
}
CELERY_BEAT_SCHEDULE["prune-node-history"] = {
    "task": "network.tasks.prune_node_history",
    "schedule": SOLLOL_EVENT_PRUNE_INTERVAL,
}
if SOLLOL_DISCOVERY_CIDRS:
    CELERY_BEAT_SCHEDULE["scan-subnets"] = {
        "task": "network.tasks.scan_subnets",
        "schedule": SOLLOL_DISCOVERY_RESCAN_INTERVAL,
    }

# Alerting (alerts/): rules are evaluated every EVALUATE_INTERVAL seconds; a built-in
# rule fires once its condition held ALERT_FOR seconds and resolves once it has not
# held as long. Notifications of one rule wait GROUP_WAIT seconds for others to
# join them, and while an alert of the rule that began within GROUP_GATHER seconds
# of the first is still pending (a lone alert is told at once); a firing alert is
# told again every REPEAT seconds.
SOLLOL_ALERT_EVALUATE_INTERVAL = env_float("SOLLOL_ALERT_EVALUATE_INTERVAL", 2.0)
SOLLOL_ALERT_FOR = env_float("SOLLOL_ALERT_FOR", 30.0)
SOLLOL_ALERT_GROUP_WAIT = env_float("SOLLOL_ALERT_GROUP_WAIT", 0.0)
SOLLOL_ALERT_GROUP_GATHER = env_float("SOLLOL_ALERT_GROUP_GATHER", 60.0)
SOLLOL_ALERT_REPEAT = env_float("SOLLOL_ALERT_REPEAT", 4 * 3600.0)
# Rules kept in a file (YAML, or JSON by its .json name): alerts/config.py.
SOLLOL_ALERT_RULES = env_str("SOLLOL_ALERT_RULES")
# Zero-file channels: generic JSON webhooks, e-mail through SMTP, Alertmanager.
SOLLOL_ALERT_WEBHOOKS = env_list("SOLLOL_ALERT_WEBHOOKS")
SOLLOL_ALERT_WEBHOOK_SECRET = env_str("SOLLOL_ALERT_WEBHOOK_SECRET")
SOLLOL_ALERT_EMAIL_TO = env_list("SOLLOL_ALERT_EMAIL_TO")
SOLLOL_ALERT_EMAIL_FROM = env_str("SOLLOL_ALERT_EMAIL_FROM", "sollol@localhost")
SOLLOL_SMTP_URL = env_str("SOLLOL_SMTP_URL")
SOLLOL_ALERTMANAGER_URL = env_str("SOLLOL_ALERTMANAGER_URL")
# Sending: each attempt waits at most TIMEOUT seconds; a failed one is tried again
# after 2, 4, 8 ... seconds (at most 5 minutes apart), ATTEMPTS times in all.
SOLLOL_ALERT_SEND_TIMEOUT = env_float("SOLLOL_ALERT_SEND_TIMEOUT", 10.0)
SOLLOL_ALERT_SEND_ATTEMPTS = env_int("SOLLOL_ALERT_SEND_ATTEMPTS", 10)
CELERY_BEAT_SCHEDULE["evaluate-alerts"] = {
    "task": "alerts.tasks.evaluate_alerts",
    "schedule": SOLLOL_ALERT_EVALUATE_INTERVAL,
    "options": {"expires": SOLLOL_ALERT_EVALUATE_INTERVAL},
}
# Resolved alerts, ended silences and sent notifications are kept this long.
SOLLOL_ALERT_RETENTION = env_float("SOLLOL_ALERT_RETENTION", 30 * 24 * 3600.0)
CELERY_BEAT_SCHEDULE["prune-alerts"] = {
    "task": "alerts.tasks.prune_alerts",
    "schedule": SOLLOL_EVENT_PRUNE_INTERVAL,
}
# Deliveries go out as soon as an evaluation queues them; this round takes retries
# whose backoff ran out and deliveries whose sender died.
CELERY_BEAT_SCHEDULE["deliver-alerts"] = {
    "task": "alerts.tasks.deliver_alerts",
    "schedule": 2.0,
    "options": {"expires": 2.0},
}

# Traces: whole traces are pruned once idle longer than AGE seconds, and the oldest
# go first whenever all stored spans together exceed COUNT.
SOLLOL_TRACE_RETENTION_AGE = env_float("SOLLOL_TRACE_RETENTION_AGE", 24 * 3600.0)
SOLLOL_TRACE_RETENTION_COUNT = env_int("SOLLOL_TRACE_RETENTION_COUNT", 100_000)
# A gzipped body (OTLP exports) may inflate to at most this many bytes.
SOLLOL_MAX_DECOMPRESSED_BYTES = env_int("SOLLOL_MAX_DECOMPRESSED_BYTES", 4 << 20)
CELERY_BEAT_SCHEDULE["prune-traces"] = {
    "task": "activity.tasks.prune_traces",
    "schedule": SOLLOL_EVENT_PRUNE_INTERVAL,
}


# The gateway (network/gateway): Ollama's API and the OpenAI-compatible one in front
# of the fleet, under /ollama/ on the dashboard's port and, with SOLLOL_GATEWAY_PORT
# (`serve --gateway-port`), at the root of a port of its own.
# `serve` logs every request of the dashboard's port (`--access-log`).
SOLLOL_ACCESS_LOG = env_bool("SOLLOL_ACCESS_LOG", False)
SOLLOL_GATEWAY_PORT = env_int("SOLLOL_GATEWAY_PORT", 0)  # 0: no port of its own
# Requests in flight a node at most (Ollama's own OLLAMA_NUM_PARALLEL default is
# 1); more wait in line up to QUEUE_TIMEOUT seconds, then 503 with Retry-After.
SOLLOL_GATEWAY_NODE_CONCURRENCY = env_int("SOLLOL_GATEWAY_NODE_CONCURRENCY", 1)
SOLLOL_GATEWAY_QUEUE_TIMEOUT = env_float("SOLLOL_GATEWAY_QUEUE_TIMEOUT", 30.0)
# Where those slots and queues are kept: "redis" (REDIS_URL, the channel layer's;
# the default when it is set) shares them among every gateway process, so that a
# node's limit holds for the fleet of gateways; "memory" keeps them in this
# process (the default without Redis: one process serves the gateway).
SOLLOL_GATEWAY_LIMITS = env_str(
    "SOLLOL_GATEWAY_LIMITS", "redis" if REDIS_URL else "memory"
).lower()
if SOLLOL_GATEWAY_LIMITS not in ("redis", "memory"):
    raise ImproperlyConfigured(
        f"SOLLOL_GATEWAY_LIMITS must be redis or memory, not {SOLLOL_GATEWAY_LIMITS!r}"
    )
if SOLLOL_GATEWAY_LIMITS == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("SOLLOL_GATEWAY_LIMITS=redis needs REDIS_URL")
# Other nodes tried when one refuses, resets or does not answer before its first
# byte (never after a byte reached the client).
SOLLOL_GATEWAY_RETRIES = env_int("SOLLOL_GATEWAY_RETRIES", 2)
SOLLOL_GATEWAY_CONNECT_TIMEOUT = env_float("SOLLOL_GATEWAY_CONNECT_TIMEOUT", 3.0)
# Until a node's reply begins: loading a large model can take minutes.
SOLLOL_GATEWAY_FIRST_BYTE_TIMEOUT = env_float(
    "SOLLOL_GATEWAY_FIRST_BYTE_TIMEOUT", 300.0
)
# Clients need "Authorization: Bearer <token>" (one of these, comma-separated).
# Without a token the gateway answers loopback clients only, unless OPEN is true.
SOLLOL_GATEWAY_TOKENS = env_list("SOLLOL_GATEWAY_TOKEN")
SOLLOL_GATEWAY_OPEN = env_bool("SOLLOL_GATEWAY_OPEN", False)
# Web pages (their Origin) that may use the gateway from a browser, as Ollama's
# OLLAMA_ORIGINS: comma-separated, * as a wildcard ("https://webui.lan",
# "http://*.lan:*"); besides Ollama's defaults (this machine on any port, app://,
# file://, tauri://, vscode-webview://, browser extensions). Others get 403.
SOLLOL_GATEWAY_ORIGINS = env_list("SOLLOL_GATEWAY_ORIGINS")
# Request bodies (chats with images are large) past this are refused with 413.
SOLLOL_GATEWAY_MAX_BODY = env_int("SOLLOL_GATEWAY_MAX_BODY", 64 * 1024 * 1024)
# How often the gateway reads the nodes again (seconds); and how often at most it
# announces model_processing for one node and model.
SOLLOL_GATEWAY_REFRESH = env_float("SOLLOL_GATEWAY_REFRESH", 1.0)
SOLLOL_GATEWAY_EVENT_INTERVAL = env_float("SOLLOL_GATEWAY_EVENT_INTERVAL", 5.0)
# false: requests are forwarded but not recorded (no records, events or spans);
# what recording costs is measured in bench/gateway.py.
SOLLOL_GATEWAY_RECORD = env_bool("SOLLOL_GATEWAY_RECORD", True)
# Where the records are written: "process", a writer process of each gateway
# process's own (the database work then never holds up the serving loop), or
# "thread", a writer thread in the gateway's process (what in-process tests use).
SOLLOL_GATEWAY_RECORDER = env_str("SOLLOL_GATEWAY_RECORDER", "process")
if SOLLOL_GATEWAY_RECORDER not in ("process", "thread"):
    raise ImproperlyConfigured(
        "SOLLOL_GATEWAY_RECORDER must be process or thread, "
        f"not {SOLLOL_GATEWAY_RECORDER!r}"
    )


# Frameworks: the Ray and Dask dashboards to watch (unset: not_configured). The
# public URLs are what a remote browser is sent to (links, embeds); they default
# to the dashboard URLs, which the server itself uses.
def _framework_url(name: str) -> str:
    url = env_str(name).rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL")
    return url


SOLLOL_RAY_DASHBOARD_URL = _framework_url("SOLLOL_RAY_DASHBOARD_URL")
SOLLOL_RAY_AUTH_TOKEN = env_str("SOLLOL_RAY_AUTH_TOKEN")
SOLLOL_RAY_PUBLIC_URL = _framework_url("SOLLOL_RAY_PUBLIC_URL")
SOLLOL_DASK_DASHBOARD_URL = _framework_url("SOLLOL_DASK_DASHBOARD_URL")
SOLLOL_DASK_PUBLIC_URL = _framework_url("SOLLOL_DASK_PUBLIC_URL")
SOLLOL_FRAMEWORK_INTERVAL = env_float("SOLLOL_FRAMEWORK_INTERVAL", 5.0)
SOLLOL_FRAMEWORK_TIMEOUT = env_float("SOLLOL_FRAMEWORK_TIMEOUT", 2.0)
SOLLOL_FRAMEWORK_HISTORY = env_int("SOLLOL_FRAMEWORK_HISTORY", 60)
CELERY_BEAT_SCHEDULE["collect-frameworks"] = {
    "task": "frameworks.tasks.collect_frameworks",
    "schedule": SOLLOL_FRAMEWORK_INTERVAL,
    "options": {"expires": SOLLOL_FRAMEWORK_INTERVAL},
}

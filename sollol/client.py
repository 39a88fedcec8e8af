"""Report an application to the SOLLOL dashboard from a background thread.

The host application must never wait for, or crash because of, the dashboard: the
constructor only starts a daemon thread, and every request, retry and error happens
there. The thread registers (retrying with backoff until the dashboard answers),
then sends a heartbeat with all its fields every `heartbeat_interval` seconds, so
a dashboard that restarted or forgot the app learns it again from the heartbeat.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import requests

from sollol import tracing
from sollol.batching import BatchSender, asked_wait, sender_thread
from sollol.loghandler import DashboardLogHandler
from sollol.tracing import Tracer

logger = logging.getLogger(__name__)

FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 30.0
# The dashboard's rules for labels (core/labels.py there), checked here too so
# that a typo fails at once in the constructor, not as a registration the
# dashboard refuses again and again in the background.
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
MOST_LABELS = 32
LONGEST_LABEL_VALUE = 200


class DashboardClient:
    """Keep one application registered with the SOLLOL dashboard while it runs."""

    def __init__(
        self,
        app_name: str,
        router_type: str = "unknown",
        version: str = "0.0.0",
        dashboard_url: str = "http://localhost:8080",
        heartbeat_interval: float = 10.0,
        metadata: Mapping[str, Any] | None = None,
        auto_register: bool = True,
        *,
        app_id: str | None = None,
        api_token: str | None = None,
        timeout: float = 2.0,
        propagate_traces: bool = True,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """The first seven arguments, in this order, are upstream SOLLOL's (its
        code runs unchanged); the rest are named. With auto_register=False
        nothing is sent until start() or register().

        labels are the operator's {name: value} for the app (`team="search"`),
        that the dashboard's alert rules and silences can be scoped by.
        """
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be a positive number of seconds")
        self.labels = _checked_labels(labels)
        self.app_id = app_id or str(uuid.uuid4())
        self.app_name = app_name
        self.router_type = router_type
        self.version = version
        self.dashboard_url = dashboard_url.rstrip("/")
        self.heartbeat_interval = heartbeat_interval
        self.timeout = timeout
        self.propagate_traces = propagate_traces
        if api_token is None:
            api_token = os.environ.get("SOLLOL_API_TOKEN") or None
        self._headers = {"Content-Type": "application/json"}
        if api_token:
            self._headers["Authorization"] = f"Bearer {api_token}"

        # Guards _metadata, _unsent_keys, _thread and _closed.
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] = dict(metadata or {})
        self._unsent_keys: set[str] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

        self._registered = threading.Event()
        self._register_tried = threading.Event()  # a register attempt finished
        self._stopping = threading.Event()
        self._wake = threading.Event()
        # Touched only by the background thread.
        self._must_register = True
        self._next_full_heartbeat = 0.0
        self._failing = False
        self._asked_wait: float | None = None  # a 429/503's Retry-After
        self._session = requests.Session()
        # Started on first use: request records, log lines (and spans, in tracing).
        self._senders: dict[str, BatchSender] = {}
        self._log_handlers: list[tuple[logging.Logger, DashboardLogHandler]] = []
        self._tracer: Tracer | None = None

        if auto_register:
            self.start()

    # --- public API, safe from any thread -------------------------------------

    @property
    def registered(self) -> bool:
        """Return whether the dashboard has acknowledged this application."""
        return self._registered.is_set()

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata sent with every full heartbeat: the dict itself, as
        upstream's client has it (a change made in it goes with the next one;
        update_metadata() sends at once)."""
        return self._metadata

    @metadata.setter
    def metadata(self, value: Mapping[str, Any]) -> None:
        with self._lock:
            self._metadata = dict(value or {})
            self._unsent_keys.update(self._metadata)
        self._wake.set()

    def start(self) -> None:
        """Start the background thread (done by the constructor unless told not to)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this DashboardClient was closed; make a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"sollol-client-{self.app_id}", daemon=True
            )
            self._thread.start()
            atexit.register(self.close)

    def register(self) -> bool:
        """Register now, as upstream's register() does; return whether the
        dashboard took it (after one attempt, at most `timeout` seconds).

        The background thread sends it, and goes on with heartbeats every
        `heartbeat_interval` (and retries, if this attempt failed). After
        unregister() it starts again, under the same app_id.
        """
        with self._lock:
            if self._closed:
                if self._thread is not None and self._thread.is_alive():
                    logger.warning(
                        "%s is still unregistering from the dashboard; "
                        "register() again once it has",
                        self,
                    )
                    return False
                self._reopen()
        if self.registered:
            return True
        self._register_tried.clear()
        self.start()
        self._wake.set()
        self._register_tried.wait(self.timeout + 1.0)
        return self.registered

    def heartbeat(self, metadata: Mapping[str, Any] | None = None) -> bool:
        """Send a heartbeat now from the calling thread, as upstream's heartbeat()
        does: with these metadata (merged by the dashboard) or all of it. Return
        whether the dashboard took it; False before the app is registered."""
        if not self.registered:
            return False
        with self._lock:
            try:
                body = self._encode_report(
                    set(metadata or ()), full=not metadata, metadata=metadata
                )
            except ValueError as exc:
                self._report_failure(f"the metadata cannot be sent as JSON: {exc}")
                return False
        try:
            response = requests.post(
                self.dashboard_url + "/api/applications/heartbeat",
                data=body,
                headers=self._headers,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            self._report_failure(f"cannot reach it ({type(exc).__name__})")
            return False
        if response.status_code != 200:
            self._report_failure(
                f"/api/applications/heartbeat answered {response.status_code}: "
                f"{_error(response)}"
            )
            return False
        self._report_success()
        return True

    def unregister(self) -> None:
        """Stop reporting and unregister the app, as upstream's unregister() does
        (close(), which atexit also calls); register() starts again."""
        self.close()

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait until the dashboard acknowledged the app; return whether it did."""
        return self._registered.wait(timeout)

    def update_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Merge these keys into the metadata and have them sent to the dashboard
        now (from the background thread)."""
        if not metadata:
            return
        with self._lock:
            self._metadata.update(metadata)
            self._unsent_keys.update(metadata)
        self._wake.set()

    def record_request(
        self,
        *,
        node: str,
        model: str,
        latency_ms: float,
        ok: bool = True,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        error: str | None = None,
    ) -> None:
        """Report one inference request the app made; sent in batches, never blocks.

        It feeds GET /api/metrics (latency percentiles, success rate, tokens/s per
        node, model and app) and the `model_processing` activity of that model.
        """
        record = {
            "node": node,
            "model": model,
            "latency_ms": latency_ms,
            "ok": ok,
            "timestamp": time.time(),
        }
        if prompt_tokens is not None:
            record["prompt_tokens"] = prompt_tokens
        if completion_tokens is not None:
            record["completion_tokens"] = completion_tokens
        if error:
            record["error"] = str(error)[:500]
        sender = self._sender("activity")
        if sender is not None:  # None once closed: the report is dropped
            sender.put(record)

    def log_handler(self, level: int = logging.INFO) -> DashboardLogHandler:
        """Return a logging.Handler that ships records to the dashboard's /ws/logs."""
        sender = self._sender("logs")
        if sender is None:
            raise RuntimeError("this DashboardClient was closed; make a new one")
        return DashboardLogHandler(sender, self.app_id, level)

    def install_log_handler(
        self, logger: logging.Logger | str | None = None, level: int = logging.INFO
    ) -> DashboardLogHandler:
        """Attach a log_handler() to logger (the root logger by default).

        close() detaches it again and sends what is queued.
        """
        target = (
            logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
        )
        handler = self.log_handler(level)
        target.addHandler(handler)
        with self._lock:
            self._log_handlers.append((target, handler))
        return handler

    def trace(self, name: str, **attributes: Any):
        """Time a block as a span of this app's trace (see sollol.tracing.Tracer).

            with client.trace("generate", model="llama3.2:3b") as span:
                ollama.Client(host=node).generate(...)  # carries traceparent

        Nested calls make child spans; spans go to the dashboard in the background.
        Calls made inside a span with requests or httpx (ollama-python's client)
        carry its W3C traceparent, so the services they reach join the trace;
        propagate_traces=False leaves those libraries alone (then pass
        `client.tracer.inject({})` as headers yourself).
        """
        if self.propagate_traces:
            tracing.instrument()
        return self.tracer.trace(name, **attributes)

    @property
    def tracer(self) -> Tracer:
        """Return this app's Tracer (service = the app's name), made on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this DashboardClient was closed; make a new one")
            if self._tracer is None:
                self._tracer = Tracer(
                    self.dashboard_url,
                    self.app_name,
                    headers=self._auth_headers(),
                    timeout=self.timeout,
                )
            return self._tracer

    def flush(self, timeout: float = 5.0) -> bool:
        """Send queued request records, log lines and spans now; say if all left."""
        with self._lock:
            senders = list(self._senders.values())
            tracer = self._tracer
        done = all(sender.flush(timeout) for sender in senders)
        return (tracer.flush(timeout) if tracer is not None else True) and done

    def close(self, timeout: float = 2.0) -> None:
        """Stop the background thread, unregistering the app first if it registered.

        Queued request records and log lines are sent first. Wait at most
        `timeout` seconds for each; calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            handlers, self._log_handlers = self._log_handlers, []
            senders = list(self._senders.values())
            tracer = self._tracer
        for target, handler in handlers:
            target.removeHandler(handler)
        for sender in senders:
            sender.close(timeout)
        if tracer is not None:
            tracer.close(timeout)
        atexit.unregister(self.close)
        self._stopping.set()
        self._wake.set()
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            logger.info(
                "Gave up waiting for the dashboard after %.1fs; %s was not "
                "unregistered and will be marked stale by the dashboard",
                timeout,
                self.app_name,
            )

    def _reopen(self) -> None:
        """Make a closed client startable again; call with the lock held."""
        self._closed = False
        self._thread = None
        self._stopping.clear()
        self._must_register = True
        self._next_full_heartbeat = 0.0
        self._senders = {}
        self._tracer = None
        self._session = requests.Session()

    def __enter__(self) -> DashboardClient:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _sender(self, kind: str) -> BatchSender | None:
        with self._lock:
            if self._closed:
                return None
            sender = self._senders.get(kind)
            if sender is None:
                if kind == "activity":
                    path, encode = "/api/activity", self._wrap_requests
                else:
                    path, encode = "/api/logs", self._wrap_logs
                sender = self._senders[kind] = BatchSender(
                    self.dashboard_url + path,
                    headers=self._auth_headers(),
                    encode=encode,
                    name=f"sollol-{kind}-{self.app_id}",
                    timeout=self.timeout,
                )
            return sender

    def _auth_headers(self) -> dict[str, str]:
        return {k: v for k, v in self._headers.items() if k == "Authorization"}

    def _wrap_requests(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"app_id": self.app_id, "requests": records}

    def _wrap_logs(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"app_id": self.app_id, "records": records}

    # --- background thread ----------------------------------------------------

    def _run(self) -> None:
        # What this thread logs (and urllib3 for it) stays out of log_handler().
        with sender_thread():
            self._report_until_closed()

    def _report_until_closed(self) -> None:
        retry_delay = FIRST_RETRY_DELAY
        while not self._stopping.is_set():
            # Clear before looking for work, so a wake-up that comes in between is
            # not lost.
            self._wake.clear()
            try:
                sent = self._send_due_report()
            except Exception:
                # A bug here must not end the thread: the app would vanish silently.
                logger.exception("Unexpected error while reporting to the dashboard")
                sent = False
            if sent is None:
                self._wake.wait(max(0.0, self._next_full_heartbeat - time.monotonic()))
            elif sent:
                retry_delay = FIRST_RETRY_DELAY
            elif self._asked_wait is not None:
                # The dashboard slowed us (429) or is busy (503) and said when to
                # come back: then, not sooner (a little jitter spreads many apps),
                # with the registration and the unsent metadata kept.
                asked, self._asked_wait = self._asked_wait, None
                self._stopping.wait(random.uniform(asked, asked * 1.2 + 0.05))
            else:
                delay = retry_delay
                if self.registered:
                    # The dashboard knows us; a heartbeat is due every interval anyway.
                    delay = min(delay, self.heartbeat_interval)
                # Jitter spreads out many apps that lost the same dashboard at once.
                self._stopping.wait(random.uniform(delay / 2, delay))
                retry_delay = min(retry_delay * 2, MAX_RETRY_DELAY)
        try:
            self._unregister()
        except Exception:
            logger.exception("Unexpected error while unregistering from the dashboard")
        finally:
            self._session.close()

    def _send_due_report(self) -> bool | None:
        """Send what is due; return whether it went through, or None if nothing was."""
        if self._must_register:
            try:
                return self._post_report("/api/applications/register", full=True)
            finally:
                self._register_tried.set()
        if time.monotonic() >= self._next_full_heartbeat:
            return self._post_report("/api/applications/heartbeat", full=True)
        with self._lock:
            changed = bool(self._unsent_keys)
        if changed:
            return self._post_report("/api/applications/heartbeat", full=False)
        return None

    def _post_report(self, path: str, *, full: bool) -> bool:
        """POST a register or heartbeat; return whether the dashboard accepted it.

        With full=False, the metadata holds only the keys changed since the last
        report (the dashboard merges heartbeat metadata into what it has).
        """
        heartbeat = path.endswith("/heartbeat")
        with self._lock:
            sending, self._unsent_keys = self._unsent_keys, set()
            try:
                body = self._encode_report(sending, full=full)
            except ValueError as exc:
                self._unsent_keys |= sending
                self._report_failure(f"the metadata cannot be sent as JSON: {exc}")
                return False
        try:
            response = self._post(path, body)
        except requests.RequestException as exc:
            response = None
            self._report_failure(f"cannot reach it ({type(exc).__name__})")
        accepted = response is not None and (
            response.status_code == 200 or (heartbeat and response.status_code == 404)
        )
        if not accepted:
            with self._lock:
                self._unsent_keys |= sending
            self._asked_wait = asked_wait(response)
            if response is not None:
                self._report_failure(
                    f"{path} answered {response.status_code}: {_error(response)}"
                )
            return False
        self._report_success()
        if response.status_code == 404:
            # The dashboard forgot the app and could not register it from this
            # heartbeat: register again at once, with all the metadata.
            logger.info("The dashboard no longer knows %s; registering again", self)
            self._registered.clear()
            self._must_register = True
            return True
        if full:
            self._next_full_heartbeat = time.monotonic() + self.heartbeat_interval
        if heartbeat and _json(response).get("registered"):
            logger.info("The dashboard had forgotten %s; registered it again", self)
            if not full:
                # Registered from a heartbeat that carried only the changed keys:
                # send everything now so no metadata is missing there.
                self._next_full_heartbeat = 0.0
        if self._must_register:
            logger.info(
                "Registered %s with the dashboard at %s", self, self.dashboard_url
            )
            self._must_register = False
        self._registered.set()
        return True

    def _encode_report(
        self,
        keys: set[str],
        *,
        full: bool,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Return the JSON body of a register or heartbeat; call with the lock held.

        Serializing under the lock keeps update_metadata() from changing the
        metadata halfway through; the dict itself (client.metadata) may still be
        changed by the application meanwhile, so it is copied first (one step:
        dict() of a dict holds the interpreter lock throughout).
        """
        if metadata is None:
            held = dict(self._metadata)
            metadata = held if full else {k: held[k] for k in keys if k in held}
        report = {
            "app_id": self.app_id,
            "name": self.app_name,
            "router_type": self.router_type,
            "version": self.version,
            "metadata": metadata,
        }
        if full and self.labels is not None:
            # In full heartbeats too: a dashboard that forgot the app registers
            # it again from one, and must not lose its labels then.
            report["labels"] = self.labels
        return json.dumps(
            report,
            default=str,  # a datetime or a Path in the metadata must not stop reports
            allow_nan=False,  # the dashboard only accepts strict JSON
        )

    def _unregister(self) -> None:
        if not self.registered:
            return
        try:
            response = self._post(f"/api/applications/{self.app_id}/unregister", None)
        except requests.RequestException as exc:
            logger.info(
                "Could not unregister %s (%s); the dashboard will mark it stale",
                self,
                type(exc).__name__,
            )
            return
        if response.status_code in (200, 404):
            self._registered.clear()
            logger.debug("Unregistered %s from the dashboard", self)
        else:
            logger.info(
                "The dashboard refused to unregister %s: %s %s",
                self,
                response.status_code,
                _error(response),
            )

    def _post(self, path: str, body: str | None) -> requests.Response:
        return self._session.post(
            self.dashboard_url + path,
            data=body,
            headers=self._headers,
            timeout=self.timeout,
        )

    def _report_failure(self, reason: str) -> None:
        # One warning per outage: a dashboard that is down for an hour must not
        # fill the host application's log.
        if self._failing:
            logger.debug("Dashboard still unavailable: %s", reason)
            return
        self._failing = True
        logger.warning(
            "SOLLOL dashboard at %s: %s; %s keeps retrying in the background",
            self.dashboard_url,
            reason,
            self,
        )

    def _report_success(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("SOLLOL dashboard at %s answers again", self.dashboard_url)

    def __str__(self) -> str:
        return f"{self.app_name} ({self.app_id})"


def _checked_labels(labels: Mapping[str, str] | None) -> dict[str, str] | None:
    if labels is None:
        return None
    if not isinstance(labels, Mapping):
        raise TypeError('labels must be a dict of names and texts: {"team": "search"}')
    if len(labels) > MOST_LABELS:
        raise ValueError(f"labels may have at most {MOST_LABELS} labels")
    for name, value in labels.items():
        if not isinstance(name, str) or not LABEL_NAME.match(name):
            raise ValueError(
                f"labels: {name!r} is not a label name (letters, digits and _, "
                "not starting with a digit, at most 63)"
            )
        if not isinstance(value, str) or len(value) > LONGEST_LABEL_VALUE:
            raise ValueError(
                f"labels.{name} must be a string of at most "
                f"{LONGEST_LABEL_VALUE} characters"
            )
    return dict(labels)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(response: requests.Response) -> str:
    return str(_json(response).get("error") or response.reason or "")

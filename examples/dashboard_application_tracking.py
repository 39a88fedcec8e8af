"""An application reporting to the SOLLOL dashboard: the developer's side.

    python examples/dashboard_application_tracking.py     # :8080 (client installed:
    # README "From an application"; or from the checkout with PYTHONPATH=.)
    python examples/dashboard_application_tracking.py http://dash:8080 \\
        --ollama http://127.0.0.2:11434 --requests 0      # until Ctrl-C

What an application does with `sollol.DashboardClient`, start to end:

1. register (in the background: the app never waits for the dashboard),
2. forward its log records (`install_log_handler`) to the dashboard's /ws/logs,
3. for each inference request to Ollama: time it as a trace (`client.trace`, with
   the W3C traceparent passed on to the node) and report it (`record_request`),
4. update its metadata while it runs (`update_metadata`),
5. exit cleanly: queued reports are sent and the app unregisters (`close`).

It talks to a real Ollama API (default http://127.0.0.1:11434). With none there, the
requests fail, and are reported as failures: the dashboard shows those too. `make
demo` runs a simulated fleet to point it at.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any

import requests

from sollol import DashboardClient

log = logging.getLogger("example_app")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Report an example application to the SOLLOL dashboard."
    )
    parser.add_argument(
        "dashboard_url",
        nargs="?",
        default="http://127.0.0.1:8080",
        help="the dashboard (default http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--ollama",
        default="http://127.0.0.1:11434",
        help="the Ollama node to send requests to",
    )
    parser.add_argument(
        "--model", default=None, help="model to use (default: the node's first)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=20,
        help="how many requests to make, then exit (0: until Ctrl-C)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between requests"
    )
    parser.add_argument("--name", default="Example App", help="application name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    # 1. Register. Returns at once; registering, heartbeats (every 10 s) and
    # retries happen on a background thread.
    client = DashboardClient(
        app_name=args.name,
        router_type="DirectOllama",
        version="1.0.0",
        dashboard_url=args.dashboard_url,
        # "nodes" tells the dashboard which Ollama nodes this app uses: it then
        # watches them too.
        metadata={"env": "example", "nodes": [args.ollama]},
    )
    try:
        # 2. Log records of this app's logger go to the dashboard as well.
        client.install_log_handler(log, level=logging.INFO)
        if client.wait_registered(timeout=10):
            log.info("registered with %s as %s", args.dashboard_url, client.app_id)
        else:
            log.warning("%s does not answer yet; retrying", args.dashboard_url)
        model = args.model or first_model(args.ollama) or "llama3.2:3b"
        made = failed = 0
        while not stop.is_set() and (args.requests == 0 or made < args.requests):
            ok = ask(client, args.ollama, model, f"Question {made + 1}")
            made += 1
            failed += not ok
            # 4. Metadata changes merge into what the dashboard has.
            client.update_metadata(
                {"requests_processed": made, "failures": failed, "model": model}
            )
            stop.wait(args.interval)
        log.info("done: %d requests, %d failed", made, failed)
    finally:
        # 5. Send what is queued and unregister (also done at interpreter exit).
        client.close(timeout=5)
    print(f"{args.name} stopped.", flush=True)
    return 0


def first_model(ollama_url: str) -> str | None:
    """Return the first model the node has that can generate text."""
    try:
        models = requests.get(f"{ollama_url}/api/tags", timeout=2).json()["models"]
    except (requests.RequestException, ValueError, KeyError):
        return None
    for model in models:
        if "bert" not in (model.get("details") or {}).get("family", ""):
            return model["name"]
    return None


def ask(client: DashboardClient, ollama_url: str, model: str, prompt: str) -> bool:
    """Make one request to Ollama, traced and reported; return whether it worked."""
    node = ollama_url.split("://", 1)[-1]
    # 3. A span for the whole call; traceparent makes the node's own spans (if it
    # traces) children of it.
    with client.trace("generate", model=model, node=node) as span:
        started = time.perf_counter()
        reply: dict[str, Any] = {}
        error = None
        try:
            response = requests.post(
                f"{ollama_url}/api/generate",
                json={"model": model, "prompt": prompt, "stream": False},
                headers=client.tracer.inject({}),
                timeout=30,
            )
            reply = response.json()
            if not response.ok:
                error = f"HTTP {response.status_code}: {reply.get('error')}"
        except (requests.RequestException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.perf_counter() - started) * 1000
        if error:
            span.set_status("error", error)
    client.record_request(
        node=node,
        model=model,
        latency_ms=round(latency_ms, 1),
        ok=error is None,
        prompt_tokens=reply.get("prompt_eval_count"),
        completion_tokens=reply.get("eval_count"),
        error=error,
    )
    if error:
        log.warning("%s on %s failed after %.0f ms: %s", model, node, latency_ms, error)
    else:
        log.info("%s on %s answered in %.0f ms", model, node, latency_ms)
    return error is None


if __name__ == "__main__":
    sys.exit(main())

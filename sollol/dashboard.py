"""Run the SOLLOL dashboard inside a Python program, with local Ray/Dask if asked.

Everything heavy (Django, Dask, Ray) is imported inside the methods that need it,
so `import sollol` stays as cheap as the client library.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

SETTINGS_MODULE = "sollol_site.settings"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
DASK_INSTALL_HINT = "pip install distributed bokeh"
RAY_INSTALL_HINT = "pip install 'ray[default]'"
# Redis (the production channel layer and broker) listens here; `ray start --head`
# would put Ray's GCS on it too.
REDIS_PORT = 6379


class UnifiedDashboard:
    """Serve the SOLLOL dashboard (web UI, API and periodic jobs) in this process.

    The dashboard watches the Ray and Dask dashboards on `ray_dashboard_port` and
    `dask_dashboard_port` of the same host (SOLLOL_RAY_DASHBOARD_URL and
    SOLLOL_DASK_DASHBOARD_URL, unless the environment already sets them; a port of
    None leaves that framework unconfigured). With `enable_dask` / `enable_ray` it
    also starts a local Dask cluster / Ray instance there, unless one already
    answers on that port, and stops it again when serving ends. Clusters it starts
    listen on the dashboard's host: loopback unless told otherwise. Asked to serve
    on every interface (0.0.0.0), their dashboards do too, but the Dask scheduler
    and Ray's node processes stay on loopback, as both run code for whoever
    reaches them.

    Links to those dashboards are on the host a browser used for the page (so a
    remote browser is not sent to its own 127.0.0.1); `ray_public_url` /
    `dask_public_url` (SOLLOL_RAY_PUBLIC_URL / SOLLOL_DASK_PUBLIC_URL) name another
    address, for when browsers reach the clusters elsewhere (a proxy, a tunnel).

    Two ways to use it:

        UnifiedDashboard(enable_dask=True).run()   # start, serve, stop: all in one

        with UnifiedDashboard(enable_dask=True) as dashboard:   # clusters first,
            submit_work(dashboard.dask_scheduler_address)       # e.g. to use them
            dashboard.run()                                     # stopped on exit
    """

    def __init__(
        self,
        router: Any = None,
        ray_dashboard_port: int | None = 8265,
        dask_dashboard_port: int | None = 8787,
        dashboard_port: int = 8080,
        enable_dask: bool = False,
        enable_ray: bool = False,
        host: str | None = None,
        *,
        dask_workers: int | None = None,
        dask_threads_per_worker: int | None = None,
        dask_processes: bool = True,
        ray_num_cpus: int | None = None,
        ray_object_store_memory: int | None = None,
        ray_public_url: str | None = None,
        dask_public_url: str | None = None,
    ) -> None:
        for name, url in (
            ("ray_public_url", ray_public_url),
            ("dask_public_url", dask_public_url),
        ):
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http:// or https:// URL")
        if enable_dask and dask_dashboard_port is None:
            raise ValueError("enable_dask=True needs a dask_dashboard_port")
        if enable_ray and ray_dashboard_port is None:
            raise ValueError("enable_ray=True needs a ray_dashboard_port")
        if isinstance(router, int) and not isinstance(router, bool):
            raise TypeError(
                "UnifiedDashboard's first argument is the router, as upstream "
                "SOLLOL's: pass the port by name (dashboard_port=...)"
            )
        self.router = router
        self.dashboard_port = dashboard_port
        self.ray_dashboard_port = ray_dashboard_port
        self.dask_dashboard_port = dask_dashboard_port
        self.enable_dask = enable_dask
        self.enable_ray = enable_ray
        self.host = host
        self.dask_workers = dask_workers
        self.dask_threads_per_worker = dask_threads_per_worker
        self.dask_processes = dask_processes
        self.ray_num_cpus = ray_num_cpus
        self.ray_object_store_memory = ray_object_store_memory
        self.ray_public_url = ray_public_url
        self.dask_public_url = dask_public_url
        # What start_frameworks() started (and stop_frameworks() stops).
        self.dask_cluster: Any = None
        self.ray_started = False
        self._frameworks_host: str | None = None
        self._saved_sigterm: Any = None

    # --- public API -----------------------------------------------------------

    @property
    def dask_scheduler_address(self) -> str | None:
        """Return the scheduler address of the Dask cluster this started, if any."""
        return self.dask_cluster.scheduler_address if self.dask_cluster else None

    def start_frameworks(self, host: str | None = None) -> None:
        """Point the dashboard at Ray/Dask and start the clusters asked for.

        Done by run() when not done before; call it yourself to use the clusters
        before serving, and then stop_frameworks() (or use `with`) afterwards.
        Calling it again does nothing.
        """
        if self._frameworks_host is not None:
            return
        _refuse_in_worker_process()
        host = self._host(host)
        self._frameworks_host = host
        self._unwind_on_sigterm()
        try:
            if self.enable_dask:
                with _interrupts_deferred():
                    self._start_dask(host)
            if self.enable_ray:
                with _interrupts_deferred():
                    self._start_ray(host)
        except BaseException:
            self.stop_frameworks()
            raise
        # Where the collectors look, unless the operator said otherwise; set
        # before Django reads its settings.
        for variable, port in (
            ("SOLLOL_DASK_DASHBOARD_URL", self.dask_dashboard_port),
            ("SOLLOL_RAY_DASHBOARD_URL", self.ray_dashboard_port),
        ):
            if port is not None:
                os.environ.setdefault(variable, _http_url(_connect_host(host), port))
        # Asked for by name here, so it wins over the environment.
        for variable, url in (
            ("SOLLOL_RAY_PUBLIC_URL", self.ray_public_url),
            ("SOLLOL_DASK_PUBLIC_URL", self.dask_public_url),
        ):
            if url is not None:
                os.environ[variable] = url

    def stop_frameworks(self) -> None:
        """Stop the Ray instance and Dask cluster start_frameworks() started."""
        if self.ray_started:
            self.ray_started = False
            import ray

            try:
                ray.shutdown()
                _say("Ray: local instance stopped")
            except Exception as error:
                _warn(f"Ray did not shut down cleanly: {error}")
        cluster, self.dask_cluster = self.dask_cluster, None
        if cluster is not None:
            try:
                cluster.close(timeout=20)
                _say("Dask: local cluster stopped")
            except Exception as error:
                _warn(f"the Dask cluster did not close cleanly: {error}")
        if self._saved_sigterm is not None:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGTERM, self._saved_sigterm)
            self._saved_sigterm = None
        self._frameworks_host = None

    def run(
        self, host: str | None = None, debug: bool = False, allow_fallback: bool = True
    ) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM); call it from the main thread.

        Listen on `host`, else the host given to the constructor, else 127.0.0.1.
        Clusters this call starts are stopped before it returns; those started
        before it (start_frameworks(), `with`) are left to whoever started them.
        `debug` and `allow_fallback` are upstream SOLLOL's run() options, taken
        so that its code runs unchanged; they have no effect here.
        """
        if debug or not allow_fallback:
            _say("UnifiedDashboard.run(): debug and allow_fallback have no effect here")
        host = self._host(host)
        if importlib.util.find_spec("sollol_site") is None:
            raise RuntimeError(
                "UnifiedDashboard needs the SOLLOL dashboard server (the sollol_site "
                "project), which is not importable here: run it from the SOLLOL "
                "checkout or install the server, or start it with `python manage.py "
                "serve` and point DashboardClient at it"
            )
        # Imported here so that `import sollol` needs only requests.
        try:
            import django
            from django.conf import settings
            from django.core.management import call_command
        except ImportError as exc:
            raise RuntimeError(
                "UnifiedDashboard needs the server requirements "
                f"(requirements.txt): {exc}"
            ) from exc
        if settings.configured and settings.SETTINGS_MODULE != SETTINGS_MODULE:
            raise RuntimeError(
                f"Django is already set up in this process with "
                f"{settings.SETTINGS_MODULE!r}; run the dashboard in its own process "
                "(`python manage.py serve`)"
            )
        started_here = self._frameworks_host is None
        try:
            self.start_frameworks(host)
            self._point_at_router_nodes()
            os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
            # The settings read these: SOLLOL_HOST decides which Host headers are
            # allowed (any, when listening on all interfaces).
            os.environ["SOLLOL_HOST"] = host
            os.environ["SOLLOL_PORT"] = str(self.dashboard_port)
            django.setup()
            call_command("serve", host=host, port=self.dashboard_port)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM before the server took over the signals: as clean
            # a stop as one while serving.
            _say("SOLLOL dashboard stopped while starting.")
        finally:
            if started_here:
                self.stop_frameworks()

    def __enter__(self) -> UnifiedDashboard:
        self.start_frameworks()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_frameworks()

    # --- clusters ---------------------------------------------------------------

    def _start_dask(self, host: str) -> None:
        port = self.dask_dashboard_port
        assert port is not None
        url = _http_url(_connect_host(host), port)
        found = _probe(url + "/health")
        if found == "refused":
            pass
        elif found[0] == 200 and found[1].strip() == b"ok":
            _say(f"Dask: using the scheduler already serving {url}")
            return
        else:
            _warn(
                f"not starting a local Dask cluster: port {port} on {host} is taken by "
                "something that is not a Dask scheduler (pass another "
                "dask_dashboard_port)"
            )
            return
        try:
            from distributed import LocalCluster
        except ImportError:
            _warn(
                "enable_dask=True needs Dask's distributed package, not installed "
                f"here: `{DASK_INSTALL_HINT}`. Serving without a local Dask cluster."
            )
            return
        # The scheduler runs pickled code for any client: on loopback unless the
        # operator named an address; "every interface" is for the dashboard only.
        cluster_host = _connect_host(host) if host in WILDCARD_HOSTS else host
        self.dask_cluster = LocalCluster(
            n_workers=self.dask_workers,
            threads_per_worker=self.dask_threads_per_worker,
            processes=self.dask_processes,
            host=cluster_host,
            scheduler_port=0,
            dashboard_address=f"{_bracketed(host or '0.0.0.0')}:{port}",
        )
        actual = self.dask_cluster.scheduler.http_server.port
        if actual != port:  # taken in the meantime: Dask moved to a free one
            self.dask_dashboard_port = actual
        workers = len(self.dask_cluster.scheduler_info.get("workers", {}))
        _say(
            f"Dask: started a local cluster ({workers} workers, scheduler "
            f"{self.dask_cluster.scheduler_address}), dashboard "
            f"{_http_url(_connect_host(host), actual)}/status"
        )

    def _start_ray(self, host: str) -> None:
        port = self.ray_dashboard_port
        assert port is not None
        url = _http_url(_connect_host(host), port)
        found = _probe(url + "/api/version")
        if found == "refused":
            pass
        elif found[0] in (401, 403) or (found[0] == 200 and b"ray_version" in found[1]):
            _say(f"Ray: using the Ray dashboard already serving {url}")
            return
        else:
            _warn(
                f"not starting a local Ray: port {port} on {host} is taken by "
                "something that is not a Ray dashboard (pass another "
                "ray_dashboard_port)"
            )
            return
        node_host = _connect_host(host) if host in WILDCARD_HOSTS else host
        if _is_loopback(node_host):
            _keep_ray_on_loopback()
        try:
            import ray
            from ray._private.utils import get_dashboard_dependency_error
        except ImportError:
            _warn(
                f"enable_ray=True needs Ray, not installed here: `{RAY_INSTALL_HINT}`."
                " Serving without a local Ray."
            )
            return
        if get_dashboard_dependency_error() is not None:
            _warn(
                "enable_ray=True needs Ray's dashboard, which this Ray install "
                f"lacks: `{RAY_INSTALL_HINT}`. Serving without a local Ray."
            )
            return
        if os.environ.get("RAY_GCS_SERVER_PORT", "").strip() == str(REDIS_PORT):
            _warn(
                f"not starting a local Ray: RAY_GCS_SERVER_PORT asks for {REDIS_PORT}"
                ", Redis's port; unset it and Ray picks a free one."
            )
            return
        if ray.is_initialized():
            _warn("Ray is already initialised in this process; not starting another")
            return
        # address="local": a new instance even if `ray start` left one running.
        # Its GCS gets a free port (never Redis's 6379, as `ray start` would use).
        context = ray.init(
            address="local",
            include_dashboard=True,
            dashboard_host=host or "0.0.0.0",
            dashboard_port=port,
            num_cpus=self.ray_num_cpus,
            object_store_memory=self.ray_object_store_memory,
            log_to_driver=False,
            _node_ip_address=node_host,
        )
        self.ray_started = True
        dashboard = f"http://{context.dashboard_url}"
        if not context.dashboard_url:
            _warn("Ray started, but without its dashboard; the dashboard cannot see it")
        else:
            # Ray (2.5x+) protects a cluster it starts with a token; the
            # collector needs the same one.
            token = _ray_token()
            if token:
                os.environ.setdefault("SOLLOL_RAY_AUTH_TOKEN", token)
        _say(f"Ray {ray.__version__}: started a local instance, dashboard {dashboard}")

    # --- helpers ---------------------------------------------------------------

    def _point_at_router_nodes(self) -> None:
        """Watch what an upstream router knows: its Ollama nodes and RPC backends
        become SOLLOL_OLLAMA_NODES and SOLLOL_RPC_BACKENDS, unless the environment
        names them. The dashboard probes them itself; nothing else of the router
        is used."""
        if self.router is None:
            return
        nodes, backends = router_addresses(self.router)
        for variable, found in (
            ("SOLLOL_OLLAMA_NODES", nodes),
            ("SOLLOL_RPC_BACKENDS", backends),
        ):
            if found and not os.environ.get(variable):
                os.environ[variable] = ",".join(found)
        if nodes or backends:
            _say(
                f"Router {type(self.router).__name__}: watching {len(nodes)} "
                f"node(s) and {len(backends)} RPC backend(s) it knows"
            )
        else:
            _say(
                f"Router {type(self.router).__name__}: it names no nodes or "
                "backends this dashboard can read; discovery and "
                "SOLLOL_OLLAMA_NODES find them instead"
            )

    def _host(self, host: str | None) -> str:
        return host or self.host or os.environ.get("SOLLOL_HOST") or "127.0.0.1"

    def _unwind_on_sigterm(self) -> None:
        """Let SIGTERM unwind like Ctrl-C while clusters run, so they get stopped.

        Only where nothing else handles it; `serve` installs its own while serving.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        self._saved_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)


def run_unified_dashboard(
    router: Any = None,
    ray_dashboard_port: int = 8265,
    dask_dashboard_port: int = 8787,
    dashboard_port: int = 8080,
    host: str | None = None,
    enable_dask: bool = True,
) -> dict[str, Any]:
    """Upstream SOLLOL's function: serve a dashboard unless one already answers on
    that port. Return {"started": whether this call served it, "url": ...}; when
    it serves, it returns once serving ended. Listens on loopback unless `host`
    says otherwise (upstream's default was every interface)."""
    dashboard = UnifiedDashboard(
        router,
        ray_dashboard_port,
        dask_dashboard_port,
        dashboard_port,
        enable_dask=enable_dask,
        host=host,
    )
    listen = dashboard._host(None)
    url = _http_url(_connect_host(listen), dashboard_port)
    try:
        with socket.create_connection((_connect_host(listen), dashboard_port), 1.0):
            return {"started": False, "url": url}
    except OSError:
        pass
    dashboard.run()
    return {"started": True, "url": url}


def router_addresses(router: Any) -> tuple[list[str], list[str]]:
    """The Ollama nodes and RPC backends an upstream router names, as host:port.

    Upstream's pools keep `nodes` (dicts with host and port, or objects with a
    url or host and port); its hybrid routers an `ollama_pool` with those, and
    `rpc_backends` (dicts). Anything else is left out, never an error.
    """
    pool = router
    if not isinstance(getattr(router, "nodes", None), (list, tuple)):
        pool = getattr(router, "ollama_pool", None)
    nodes = [
        address
        for item in getattr(pool, "nodes", None) or ()
        if (address := _address(item, 11434))
    ]
    backends = [
        address
        for item in getattr(router, "rpc_backends", None) or ()
        if (address := _address(item, 50052))
    ]
    return nodes, backends


def _address(item: Any, default_port: int) -> str | None:
    """host:port (or a URL) of one node or backend as upstream describes it."""
    get = item.get if isinstance(item, dict) else lambda key: getattr(item, key, None)
    url = get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url
    host, port = get("host"), get("port") or default_port
    if not isinstance(host, str) or not host or not isinstance(port, (int, str)):
        return None
    return f"{host}:{port}"


def _refuse_in_worker_process() -> None:
    """Fail clearly where a script without a main guard starts the dashboard again.

    Dask's worker processes are spawned: each imports the operator's script anew,
    and would run its UnifiedDashboard(...) too.
    """
    import multiprocessing

    # _inheriting: multiprocessing's own mark for "importing the parent's main
    # module", the moment an unguarded script runs again.
    current = multiprocessing.current_process()
    if getattr(current, "_inheriting", False) or multiprocessing.parent_process():
        raise RuntimeError(
            "UnifiedDashboard started inside a worker process: Dask's workers import "
            'your script again. Put the call under `if __name__ == "__main__":`.'
        )


def _keep_ray_on_loopback() -> None:
    """Have Ray use 127.0.0.1 as this node's address instead of the LAN address.

    Ray replaces a loopback node address by the address of the interface that
    routes outwards, and binds its GCS and raylets there, unless this switch
    (the one it uses on macOS and Windows) is off. Its processes inherit it.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # read at import: too late for the variable
        constants.ENABLE_RAY_CLUSTER = False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back until the block is done, then act on them.

    A cluster interrupted half-way through its start-up cannot be closed cleanly
    (Dask's complains at exit); one that has started can. Handlers, not a signal
    mask: the cluster's child processes would inherit a mask.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        received.append(signum)

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, note) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(f"signal {received[0]}")


def _connect_host(host: str) -> str:
    """Return the address to reach a server on `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _bracketed(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _http_url(host: str, port: int) -> str:
    return f"http://{_bracketed(host)}:{port}"


def _probe(url: str, timeout: float = 2.0) -> tuple[int, bytes] | str:
    """Return (status, body) of GET url, or "refused" if nothing listens there."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(4096)
    except urllib.error.HTTPError as error:
        return error.code, error.read(4096)
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            return "refused"
        return 0, str(error.reason).encode()
    except (OSError, ValueError) as error:
        return 0, str(error).encode()


def _ray_token() -> str | None:
    """Return the token the local Ray wants in `Authorization: Bearer`, if any."""
    try:
        from ray._raylet import AuthenticationTokenLoader

        headers = AuthenticationTokenLoader.instance().get_token_for_http_header()
    except Exception:  # an older Ray: no token authentication
        return None
    for name, value in (headers or {}).items():
        if name.lower() == "authorization" and value.lower().startswith("bearer "):
            return value[len("bearer ") :].strip()
    return None


def _say(message: str) -> None:
    print(message, flush=True)


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)

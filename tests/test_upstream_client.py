"""Code written for upstream SOLLOL's client (sollol 0.9.66 on PyPI) runs unchanged.

Upstream's `DashboardClient(app_name, router_type, version, dashboard_url,
heartbeat_interval, metadata, auto_register)` takes its arguments in that order;
`register()`, `heartbeat()`, `unregister()` and `update_metadata()` are called by
applications that manage registration themselves; `client.metadata` is a dict
they change; `sollol.dashboard_client` and `sollol.unified_dashboard` are the
modules they import. Upstream's client sends no token: a token goes in its
dashboard URL (which requests sends as Basic auth), or the app's network is
trusted. Each test runs such code against a real dashboard process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import requests

from tests.liveserver import REPO, free_port, wait_for

pytestmark = pytest.mark.live


def listed(server) -> dict[str, dict]:
    response = requests.get(server.url + "/api/applications", timeout=5)
    response.raise_for_status()
    return {app["app_id"]: app for app in response.json()["applications"]}


def test_positional_arguments_and_explicit_register_heartbeat_unregister(
    live_dashboard, monkeypatch
):
    monkeypatch.delenv("SOLLOL_API_TOKEN", raising=False)
    from sollol.dashboard_client import DashboardClient

    # Upstream's order: heartbeat_interval before metadata, then auto_register.
    client = DashboardClient(
        "Positional App", "HybridRouter", "2.1.0", live_dashboard.url, 1,
        {"env": "lab"}, False,
    )  # fmt: skip
    try:
        assert client.heartbeat_interval == 1 and client.metadata == {"env": "lab"}
        assert client.app_id not in listed(live_dashboard)  # "I will register"
        assert client.heartbeat() is False  # not registered yet, as upstream
        assert client.register() is True
        app = listed(live_dashboard)[client.app_id]
        assert (app["name"], app["router_type"], app["version"]) == (
            "Positional App", "HybridRouter", "2.1.0",
        )  # fmt: skip
        assert app["metadata"] == {"env": "lab"}

        # The metadata dict itself, changed and sent by an explicit heartbeat.
        client.metadata["requests"] = 7
        assert client.heartbeat() is True
        assert listed(live_dashboard)[client.app_id]["metadata"]["requests"] == 7
        client.update_metadata(metadata={"uptime_hours": 1.5})
        wait_for(
            lambda: (
                listed(live_dashboard)[client.app_id]["metadata"].get("uptime_hours")
                == 1.5
            ),
            what="update_metadata(metadata=...) to reach the dashboard",
        )
        # It keeps heartbeating by itself after register().
        first = listed(live_dashboard)[client.app_id]["last_heartbeat"]
        wait_for(
            lambda: listed(live_dashboard)[client.app_id]["last_heartbeat"] > first,
            timeout=5,
            what="a heartbeat from the background",
        )

        client.unregister()
        assert client.app_id not in listed(live_dashboard)
        assert client.register() is True  # and again, under the same id
        assert listed(live_dashboard)[client.app_id]["status"] == "active"
    finally:
        client.close()


def test_upstream_module_names_and_dashboard_arguments_are_taken():
    from sollol.dashboard import router_addresses
    from sollol.unified_dashboard import UnifiedDashboard, run_unified_dashboard

    class OllamaPool:  # upstream's pool: nodes as dicts
        nodes = [{"host": "127.0.0.2", "port": 11434}, {"host": "127.0.0.3"}]

    class HybridRouter:  # upstream's hybrid router: a pool and RPC backends
        ollama_pool = OllamaPool()
        rpc_backends = [{"host": "127.0.0.4", "port": 50052}, {"port": 1}]

    dashboard = UnifiedDashboard(
        router=HybridRouter(),
        dashboard_port=18080,
        ray_dashboard_port=18265,
        dask_dashboard_port=18787,
        enable_dask=False,
    )
    assert (dashboard.dashboard_port, dashboard.ray_dashboard_port) == (18080, 18265)
    assert router_addresses(dashboard.router) == (
        ["127.0.0.2:11434", "127.0.0.3:11434"],
        ["127.0.0.4:50052"],  # one without a host is left out, not an error
    )
    assert router_addresses(object()) == ([], [])
    # Upstream's positional order: router, ray port, dask port, dashboard port.
    positional = UnifiedDashboard(None, 1, 2, 3, False)
    assert (positional.ray_dashboard_port, positional.dask_dashboard_port) == (1, 2)
    assert positional.dashboard_port == 3
    with pytest.raises(TypeError, match="dashboard_port="):
        UnifiedDashboard(8080)  # our old first argument: told, not misread
    assert callable(run_unified_dashboard)


def test_a_router_given_to_the_dashboard_has_its_nodes_watched(tmp_path):
    """UnifiedDashboard(router=...) in an operator's script: the router's nodes
    appear on the dashboard (here refused, nothing answers there: still listed)."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        from sollol.unified_dashboard import UnifiedDashboard

        class Pool:
            nodes = [{{"host": "127.0.0.9", "port": 1}}]

        if __name__ == "__main__":
            UnifiedDashboard(router=Pool(), dashboard_port={port},
                             ray_dashboard_port=None, dask_dashboard_port=None,
                             enable_dask=False).run(host="127.0.0.1", debug=False)
        """
    )
    (tmp_path / "operator_script.py").write_text(script)
    env = _server_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "operator_script.py")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def nodes() -> list[str] | None:
            assert process.poll() is None, process.stdout.read()
            try:
                url = f"http://127.0.0.1:{port}/api/network/nodes"
                return [n["url"] for n in requests.get(url, timeout=1).json()["nodes"]]
            except requests.RequestException:
                return None

        assert wait_for(nodes, timeout=30) == ["http://127.0.0.9:1"]
    finally:
        process.terminate()
        process.wait(15)


SEED_THREAD_PATTERN = """
import threading, time, sys
from sollol import DashboardClient

def start_dashboard_client():
    \"\"\"Register with SOLLOL dashboard.\"\"\"
    client = DashboardClient(
        app_name="SynapticLlamas",
        router_type="HybridRouter",
        version="1.0.0",
        dashboard_url=sys.argv[1],
        heartbeat_interval=1,
    )

# Start in background
dashboard_thread = threading.Thread(
    target=start_dashboard_client,
    daemon=True,
    name="SOLLOLDashboardClient"
)
dashboard_thread.start()

# Your application continues normally...
time.sleep(float(sys.argv[2]))
"""


def test_the_seeds_daemon_thread_pattern_heartbeats_for_life_and_unregisters(
    live_dashboard, tmp_path
):
    (tmp_path / "app.py").write_text(SEED_THREAD_PATTERN)
    env = {k: v for k, v in os.environ.items() if k != "SOLLOL_API_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "app.py"), live_dashboard.url, "4"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def app() -> dict | None:
            apps = [a for a in listed(live_dashboard).values()]
            return apps[0] if apps else None

        first = wait_for(app, timeout=10, what="the app registered")
        assert first["name"] == "SynapticLlamas"
        # The thread that made the client is long gone; heartbeats go on.
        wait_for(
            lambda: (
                (app() or {}).get("last_heartbeat", 0) > first["last_heartbeat"] + 1.5
            ),
            timeout=5,
            what="heartbeats after the making thread ended",
        )
        assert process.wait(15) == 0, process.stderr.read()
        wait_for(lambda: app() is None, timeout=5, what="unregistered at exit")
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("how", ["token in the URL", "trusted network"])
def test_upstream_style_apps_get_in_with_a_token_set(live_server_factory, how):
    trusted = (
        {"SOLLOL_TRUSTED_NETWORKS": "127.0.0.0/8"} if how != "token in the URL" else {}
    )
    server = live_server_factory(SOLLOL_API_TOKEN="s3cret-token", **trusted)
    server.start()
    base = server.url
    if how == "token in the URL":
        base = server.url.replace("http://", "http://app:s3cret-token@")
    body = {"app_id": "upstream-1", "name": "Upstream", "router_type": "x",
            "version": "1", "metadata": {}}  # fmt: skip
    # As upstream's client sends them: requests.post with the URL, no header.
    assert requests.post(f"{base}/api/applications/register", json=body, timeout=5).ok
    assert requests.post(f"{base}/api/applications/heartbeat", json=body, timeout=5).ok
    assert listed(server)["upstream-1"]["name"] == "Upstream"
    gone = requests.post(f"{base}/api/applications/upstream-1/unregister", timeout=5)
    assert gone.ok and "upstream-1" not in listed(server)
    if how == "token in the URL":
        # No token (and not a trusted network): refused, saying why.
        bare = requests.post(
            f"{server.url}/api/applications/register", json=body, timeout=5
        )
        assert bare.status_code == 401 and "Bearer" in bare.json()["error"]
        wrong = server.url.replace("http://", "http://app:wrong@")
        refused = requests.post(
            f"{wrong}/api/applications/register", json=body, timeout=5
        )
        assert refused.status_code == 403
    # Only the application endpoints take Basic auth or a trusted network: the
    # rest of the API still wants the bearer token.
    other = requests.post(
        f"{base}/api/alerts/silences",
        json={"rule": "x", "duration_seconds": 60, "created_by": "a", "comment": "b"},
        timeout=5,
    )
    assert other.status_code in (401, 403)
    # The lean lane's other writes too (only its heartbeat is an app endpoint).
    for path, lines in (("/api/logs", [{"message": "x"}]), ("/api/activity", {})):
        lean = requests.post(f"{base}{path}", json=lines, timeout=5)
        assert lean.status_code in (401, 403), path


def _server_env(tmp_path) -> dict[str, str]:
    env = {
        **os.environ,
        "SOLLOL_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SOLLOL_DISCOVER_LOCALHOST": "false",
        "PYTHONPATH": str(REPO),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("SOLLOL_OLLAMA_NODES", None)
    return env

"""deploy/, tested: the systemd units verify, and the nginx site runs with Debian's
nginx in front of daphne on loopback (only its addresses changed): the page loads,
a live stream delivers events through it, each client's address reaches the rate
limiter, and the gateway's streamed reply comes through as it is made."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect

from conftest import require
from simulator.ollama import running_fleet
from tests.liveserver import REPO, wait_for
from tests.test_nginx_real import HOST, Nginx, _free_port, _nginx

pytestmark = pytest.mark.live

DEPLOY = REPO / "deploy"


def test_the_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze is missing (Debian: systemd)")
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text()
        assert "EnvironmentFile=/etc/sollol/sollol.env" in text, unit.name
        # Where this checkout is instead of /opt/sollol, so the commands exist.
        name = unit.name.replace("@.", "@8081.")
        (tmp_path / name).write_text(text.replace("/opt/sollol", str(REPO)))
        units.append(f"./{name}")
    assert len(units) == 4
    verified = subprocess.run(
        [analyze, "verify", "--man=no", *units],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == "", verified.stderr


class SiteNginx(Nginx):
    """deploy/nginx/sollol.conf with its addresses changed, in an nginx of our own."""

    def __init__(self, root: Path, web: int, gateway: int) -> None:
        self.root = root
        self.ports = {"web": _free_port(), "gateway": _free_port()}
        site = (DEPLOY / "nginx" / "sollol.conf").read_text()
        for old, new in (
            (
                "server 127.0.0.1:8081;\n    server 127.0.0.1:8082;",
                f"server 127.0.0.1:{web};",
            ),
            ("server 127.0.0.1:11435;", f"server 127.0.0.1:{gateway};"),
            ("listen 80;", f"listen {HOST}:{self.ports['web']};"),
            ("listen 11434;", f"listen {HOST}:{self.ports['gateway']};"),
        ):
            assert site.count(old) == 1, f"deploy/nginx/sollol.conf: {old!r}"
            site = site.replace(old, new)
        (root / "site.conf").write_text(site)
        user = "user root;" if __import__("os").geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            f"{user}\nworker_processes 1;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    client_body_temp_path {root}/client_body;\n"
            f"    proxy_temp_path {root}/proxy;\n"
            f"    fastcgi_temp_path {root}/fastcgi;\n"
            f"    uwsgi_temp_path {root}/uwsgi;\n    scgi_temp_path {root}/scgi;\n"
            f"    access_log {root}/access.log;\n    include {root}/site.conf;\n}}\n"
        )
        self.process = None


def test_the_site_serves_the_page_streams_limits_and_the_gateway(
    tmp_path, live_server_factory
):
    binary = _nginx()
    require(binary is not None, "nginx is not installed (apt-get install nginx)")
    with running_fleet(1, base="127.0.0.52", port=0, seed=61) as fleet:
        node = fleet.nodes[0]
        node.pull("llama3.2:3b")
        # The periodic jobs (Celery's in production) in a process of their own,
        # on the same database; daphne serves behind nginx, as deploy/ runs it.
        nodes = {
            "SOLLOL_OLLAMA_NODES": node.url,
            "SOLLOL_DISCOVER_LOCALHOST": "false",
            "SOLLOL_PROBE_INTERVAL": "1",
        }
        prober = live_server_factory(**nodes)
        prober.start()
        server = live_server_factory(
            "daphne",
            database=prober.database,
            **nodes,
            SOLLOL_ALLOWED_HOSTS=f"{HOST},127.0.0.1",
            # As deploy/sollol.env.example says: nginx on this machine.
            SOLLOL_TRUSTED_PROXIES="127.0.0.1",
            SOLLOL_WRITE_RATE="0.5",
            SOLLOL_WRITE_BURST="2",
        )
        server.start()
        nginx = SiteNginx(tmp_path, server.port, _free_port())
        nginx.start(binary)
        try:
            base = f"http://{HOST}:{nginx.ports['web']}"
            page = requests.get(base + "/", timeout=10)
            assert page.status_code == 200 and "SOLLOL" in page.text

            # A live stream through the proxy: an app registered is heard.
            ws_url = f"ws://{HOST}:{nginx.ports['web']}/ws/applications"
            with connect(ws_url, open_timeout=10) as ws:
                body = {"app_id": "behind-nginx", "name": "Proxied"}
                posted = requests.post(
                    base + "/api/applications/register", json=body, timeout=10
                )
                assert posted.ok, posted.text
                message = json.loads(ws.recv(timeout=10))
                assert message["type"] == "app_registered"
                assert message["app_id"] == "behind-nginx"

            # Each client has its own bucket: one exhausts its writes, another
            # (another loopback address) still writes.
            def heartbeat(source: str) -> int:
                conn = http.client.HTTPConnection(
                    HOST, nginx.ports["web"], timeout=10, source_address=(source, 0)
                )
                conn.request(
                    "POST",
                    "/api/applications/heartbeat",
                    json.dumps({"app_id": "behind-nginx"}),
                    {"Content-Type": "application/json"},
                )
                status = conn.getresponse().status
                conn.close()
                return status

            statuses = [heartbeat("127.0.0.61") for _ in range(6)]
            assert 429 in statuses, statuses
            assert heartbeat("127.0.0.62") == 200

            # The gateway under /ollama/: a streamed reply comes as it is made.
            def tags():
                reply = requests.get(base + "/ollama/api/tags", timeout=5)
                assert reply.status_code == 200, reply.text
                return reply.json()["models"]

            wait_for(tags, timeout=15, what="the node's models through the gateway")
            model = tags()[0]["name"]
            node.set_generation(token_rate=20.0)
            started = time.monotonic()
            arrivals = []
            with requests.post(
                base + "/ollama/api/generate",
                json={
                    "model": model,
                    "prompt": "hello",
                    "stream": True,
                    "options": {"num_predict": 30},
                },
                stream=True,
                timeout=30,
            ) as reply:
                assert reply.status_code == 200
                for line in reply.iter_lines():
                    if line:
                        arrivals.append(time.monotonic() - started)
            assert len(arrivals) > 10
            # 30 tokens at 20/s: the first well before the last, not all at once.
            assert arrivals[-1] - arrivals[0] > 0.8, arrivals
        finally:
            nginx.stop()

"""A real Prometheus server scrapes /api/prometheus and answers queries about the fleet.

Needs the Debian package `prometheus` (/usr/bin/prometheus; .ci/run installs it).
The test starts its own Prometheus on 127.0.0.1 with its own config and data dir,
scraping only the live dashboard on 127.0.0.1, and stops it by its PID.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import require
from simulator.ollama import running_fleet
from tests.liveserver import free_port

pytestmark = pytest.mark.live

HOST = "127.0.0.1"
PROMETHEUS = Path(os.environ.get("SOLLOL_PROMETHEUS", "/usr/bin/prometheus"))


class PrometheusServer:
    """One Prometheus process on loopback scraping one target, stopped by its PID."""

    def __init__(
        self, tmp_path: Path, target_port: int, rules: Path | None = None
    ) -> None:
        self.port = free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        config = tmp_path / "prometheus.yml"
        # Only the dashboard: no alertmanagers, no remote write, no discovery.
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            + (f"rule_files:\n  - {rules}\n" if rules else "")
            + "scrape_configs:\n"
            "  - job_name: sollol\n"
            "    metrics_path: /api/prometheus\n"
            "    static_configs:\n"
            f"      - targets: ['{HOST}:{target_port}']\n"
            # The dashboard's own HTTP metrics (django-prometheus).
            "  - job_name: sollol-http\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            f"      - targets: ['{HOST}:{target_port}']\n"
        )
        self.log_path = tmp_path / "prometheus.log"
        self.process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def get(self, path: str, **params: str) -> dict:
        response = requests.get(f"{self.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def wait(self, predicate, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"prometheus exited ({self.process.returncode}):\n{self.log()}"
                )
            try:
                found = predicate()
            except requests.RequestException:
                found = None
            if found:
                return found
            time.sleep(0.2)
        pytest.fail(f"prometheus: no {what} within {timeout:g} s:\n{self.log()}")

    def query(self, promql: str) -> list[dict]:
        return self.get("/api/v1/query", query=promql)["result"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


@pytest.fixture
def prometheus_server(tmp_path) -> Iterator:
    require(
        PROMETHEUS.is_file() and os.access(PROMETHEUS, os.X_OK),
        f"{PROMETHEUS} is missing: apt-get install prometheus (Debian package)",
    )
    servers: list[PrometheusServer] = []

    def start(target_port: int, rules: Path | None = None) -> PrometheusServer:
        directory = tmp_path / f"prometheus{len(servers)}"
        directory.mkdir()
        servers.append(PrometheusServer(directory, target_port, rules))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_it_is_scraped_by_a_real_prometheus_that_answers_fleet_queries(
    live_server_factory, prometheus_server
):
    with running_fleet(1, base="127.0.0.2", port=0, seed=3) as fleet:
        [url] = fleet.urls
        address = url.removeprefix("http://")
        dashboard = live_server_factory(
            SOLLOL_OLLAMA_NODES=url,
            SOLLOL_DISCOVER_LOCALHOST="false",
            SOLLOL_PROBE_INTERVAL="1",
            SOLLOL_PROBE_TIMEOUT="1",
        )
        dashboard.start()
        for index in range(3):
            requests.post(
                f"{dashboard.url}/api/applications/register",
                json={"app_id": f"app-{index}", "name": f"App {index}"},
                timeout=5,
            ).raise_for_status()

        prometheus = prometheus_server(dashboard.port)

        def targets_up():
            targets = prometheus.get("/api/v1/targets")["activeTargets"]
            up = {t["labels"]["job"]: t for t in targets if t["health"] == "up"}
            return len(up) == 2 and up

        targets = prometheus.wait(targets_up, "two healthy scrape targets")
        fleet_target = targets["sollol"]
        assert fleet_target["scrapeUrl"] == f"{dashboard.url}/api/prometheus"
        assert fleet_target["lastError"] == ""

        # The node is up once the dashboard has probed it; Prometheus sees it so.
        node_up = f'sollol_node_up{{job="sollol",node="{address}"}}'
        [sample] = prometheus.wait(
            lambda: [r for r in prometheus.query(node_up) if r["value"][1] == "1"],
            f"{node_up} = 1",
        )
        assert sample["metric"]["instance"] == f"{HOST}:{dashboard.port}"

        [apps] = prometheus.wait(
            lambda: prometheus.query('sollol_applications{status="active"}'),
            "applications",
        )
        assert apps["value"][1] == "3"
        # Counters from the event log arrive as counters with their _total name.
        [registered] = prometheus.query(
            'sollol_events_total{stream="applications",type="app_registered"}'
        )
        assert registered["value"][1] == "3"
        # django-prometheus counted Prometheus' own scrapes of the fleet endpoint.
        scrapes = (
            "django_http_requests_total_by_view_transport_method_total"
            '{job="sollol-http",view="prometheus",method="GET"} >= 1'
        )
        prometheus.wait(lambda: prometheus.query(scrapes), scrapes)


def test_the_shipped_rules_fire_when_a_node_dies_and_resolve_when_it_is_back(
    live_server_factory, prometheus_server, tmp_path
):
    """deploy/prometheus/sollol-alerts.yml as shipped, its "for" shortened to 2 s."""
    shipped = Path(__file__).resolve().parent.parent / "deploy/prometheus"
    rules = tmp_path / "sollol-alerts.yml"
    text = (shipped / "sollol-alerts.yml").read_text()
    rules.write_text(re.sub(r"for: \d+m", "for: 2s", text))
    with running_fleet(2, base="127.0.0.2", port=0, seed=5) as fleet:
        victim, other = fleet.nodes
        dashboard = live_server_factory(
            SOLLOL_OLLAMA_NODES=",".join(fleet.urls),
            SOLLOL_DISCOVER_LOCALHOST="false",
            SOLLOL_PROBE_INTERVAL="1",
            SOLLOL_PROBE_TIMEOUT="1",
        )
        dashboard.start()
        prometheus = prometheus_server(dashboard.port, rules)

        def firing() -> set[str]:
            alerts = prometheus.get("/api/v1/alerts")["alerts"]
            return {
                a["labels"].get("node", "")
                for a in alerts
                if a["labels"]["alertname"] == "SollolNodeDown"
                and a["state"] == "firing"
            }

        up = f'sollol_node_up{{node="{victim.address}"}} == 1'
        prometheus.wait(lambda: prometheus.query(up), "the victim up")
        assert firing() == set()
        victim.die()
        prometheus.wait(lambda: firing() == {victim.address}, "SollolNodeDown firing")
        # The other node stayed up, and is not named.
        assert other.address not in firing()
        victim.revive()
        prometheus.wait(lambda: firing() == set(), "SollolNodeDown resolved")

"""deploy/prometheus and deploy/grafana: what Prometheus users are given works.

promtool (Debian's `prometheus` package; .ci/run installs it) checks the rules and
the example configuration and runs the rules' unit tests; the rules and the Grafana
dashboard are checked to ask only for series /api/prometheus writes, with label
values it uses. tests/test_prometheus_real.py has a real Prometheus fire a rule.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from applications.choices import AppStatus
from conftest import require
from network.choices import BackendStatus, NodeStatus

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "sollol-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "sollol-fleet.json"
PROMTOOL = Path(os.environ.get("SOLLOL_PROMTOOL", "/usr/bin/promtool"))
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def promtool(*args: str) -> str:
    require(
        PROMTOOL.is_file() and os.access(PROMTOOL, os.X_OK),
        f"{PROMTOOL} is missing: apt-get install prometheus (Debian package)",
    )
    done = subprocess.run(
        [str(PROMTOOL), *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_checks_the_rules_and_the_example_configuration():
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", RULES.name)
    assert "is valid prometheus config" in promtool("check", "config", "prometheus.yml")


def test_the_rules_unit_tests_pass():
    """Among them: a rejected node is not down, a GPU of unknown size never fires."""
    assert "SUCCESS" in promtool("test", "rules", "sollol-alerts.test.yml")


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule and dashboard query."""
    found = [
        (f"rule {rule['alert']}", rule["expr"])
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            found.append((f"panel {panel['title']}", target["expr"]))
    return found


@pytest.mark.django_db
def test_they_ask_only_for_series_and_statuses_the_dashboard_writes(client):
    exported = client.get("/api/prometheus", HTTP_HOST="127.0.0.1").content.decode()
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exported, re.MULTILINE))
    statuses = {
        "sollol_node_status": set(NodeStatus.values),
        "sollol_backend_status": set(BackendStatus.values),
        "sollol_applications": set(AppStatus.values),
    }
    checked = 0
    for where, expr in expressions():
        for name in re.findall(r"\bsollol_\w+", expr):
            base = name
            for part in HISTOGRAM_PARTS:
                if (
                    name.endswith(part)
                    and families.get(name[: -len(part)]) == "histogram"
                ):
                    base = name[: -len(part)]
            assert base in families, f"{where}: {name} is not in /api/prometheus"
            checked += 1
        for name, values in re.findall(r'(sollol_\w+)\{[^}]*status=~?"([^"]+)"', expr):
            if name in statuses:
                for value in values.split("|"):
                    assert value in statuses[name], f"{where}: no status {value!r}"
    assert checked > 20


def test_the_grafana_dashboard_is_whole():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]

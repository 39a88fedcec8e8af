"""The OpenAPI schema, and schemathesis fuzzing a live server against it."""

from __future__ import annotations

import shutil
import subprocess

import requests

from conftest import require
from tests.liveserver import REPO


def test_the_schema_and_its_swagger_ui_are_served_without_a_cdn(live_dashboard):
    schema = requests.get(live_dashboard.url + "/api/schema/?format=json", timeout=10)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    components = schema.json()["components"]["schemas"]

    def body_of(path: str) -> dict:
        """The body path's POST takes, as its named component describes it."""
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]
        return components[body["schema"]["$ref"].rsplit("/", 1)[1]]

    for path in (
        "/api/applications/register",
        "/api/applications/heartbeat",  # the lean lane, documented too
        "/api/network/nodes/{node_id}",
        "/api/metrics",
        "/api/logs",
        "/v1/traces",  # the OTLP receiver
        "/v1/logs",
    ):
        assert path in paths
    # Write endpoints say what their bodies look like, not just "an object".
    assert body_of("/api/applications/register")["required"] == ["name"]
    assert {"array", "object"} == {
        form["type"] for form in body_of("/api/traces")["oneOf"]
    }
    assert "resourceLogs" in body_of("/v1/logs")["properties"]
    page = requests.get(live_dashboard.url + "/api/schema/swagger/", timeout=10)
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    live_server_factory,
):
    binary = shutil.which("schemathesis", path=str(REPO / ".venv" / "bin"))
    require(binary is not None, "schemathesis is not installed (requirements-dev)")
    server = live_server_factory(
        # Fuzzed bodies add nodes: keep every probe on loopback, and none after
        # the first cycle at start-up anyway.
        SOLLOL_ALLOWED_NODE_CIDRS="127.0.0.0/8",
        SOLLOL_PROBE_INTERVAL="86400",
        SOLLOL_DISCOVER_LOCALHOST="false",
        SOLLOL_WRITE_RATE="0",
        SOLLOL_APP_WRITE_RATE="0",
    )
    server.start(timeout=60)
    result = subprocess.run(
        [
            binary,
            "run",
            f"{server.url}/api/schema/?format=json",
            "--url",
            server.url,
            "--checks",
            "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

"""The OpenAPI schema names what every operation takes and answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.openapi import schema

ROOT = Path(__file__).resolve().parents[2]


def _is_component(described: dict) -> bool:
    if "$ref" in described:
        return True
    # A list of components (an array body or answer) names them too.
    items = described.get("items", {})
    return described.get("type") == "array" and "$ref" in items


def test_every_answer_and_body_is_a_component():
    bare = []
    for path, operations in schema()["paths"].items():
        for method, operation in operations.items():
            for status in ("200", "201"):
                answer = operation["responses"].get(status, {}).get("content", {})
                if "application/json" in answer:
                    if not _is_component(answer["application/json"]["schema"]):
                        bare.append(f"{method.upper()} {path} answer {status}")
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                if not _is_component(body["application/json"]["schema"]):
                    bare.append(f"{method.upper()} {path} body")
    assert bare == []


def test_the_schema_is_made_without_a_warning():
    made = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--fail-on-warn",
            "--file",
            "/dev/null",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert "Warning" not in made.stderr, made.stderr

"""Check an API answer against the OpenAPI schema's description of it, strictly.

The schema is made in this process (drf-spectacular, as /api/schema/ makes it).
Strictly: an object the schema lists the properties of may have no others, so an
answer that grew a field the schema does not describe fails, as does one that
lost a required field or changed a type. OpenAPI 3.0's `nullable` is read as
"or null".
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

import jsonschema
from drf_spectacular.generators import SchemaGenerator


@cache
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _strict(value) for key, value in node.items()}
    if node.get("type") == "object" and "properties" in node:
        node.setdefault("additionalProperties", False)
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def _operation(path: str, method: str) -> dict[str, Any]:
    """The operation whose path template matches path (/api/x/12 → /api/x/{id})."""
    paths = schema()["paths"]
    if path in paths:
        return paths[path][method.lower()]
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"the schema has no {method} {path}")


def response_schema(path: str, method: str, status: int | str = 200) -> dict[str, Any]:
    response = _operation(path, method)["responses"][str(status)]
    if "content" not in response:
        return {"type": "null"}  # 204: no body
    body = response["content"]["application/json"]["schema"]
    return _strict({**copy.deepcopy(body), "components": schema()["components"]})


def assert_described(
    path: str, method: str, body: Any, status: int | str = 200
) -> None:
    """Fail, saying where, when body is not what the schema says path answers
    (body None: an answer without one, as a 204)."""
    described = response_schema(path.split("?")[0], method, status)
    validator = jsonschema.Draft7Validator(described)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [
            f"  at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}"
            for e in errors[:10]
        ]
        raise AssertionError(
            f"{method} {path} answered what its schema does not say:\n"
            + "\n".join(lines)
        )

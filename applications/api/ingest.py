"""POST /api/applications/register and /heartbeat on the lean lane (see core.lean).

Both go through one group-commit writer: a fleet registering at once (a dashboard
restart, a deploy of a thousand agents, a network coming back) is written in
batches, as its heartbeats are, in the order the requests arrived.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from applications import services
from applications.api.serializers import AppReport, parse_report
from core import jsonio, ratelimit
from core.lean.http import header, lean_post, limited
from core.lean.writer import get_writer
from core.tokens import token_owner

Write = services.Write


def _write(
    writes: Sequence[tuple[services.Write, AppReport]], now: dt.datetime
) -> list[Any]:
    return services.apply_writes(writes, now=now)


async def _submit(kind: services.Write, report: AppReport, scope: dict) -> Any:
    """Hand the write to the applications' writer; return its result, committed."""
    client = (scope.get("client") or ("?",))[0]
    if refused := ratelimit.app_refusal(report.app_id, client):
        raise limited(refused)
    return await get_writer("applications", _write).submit((kind, report))


def _report(body: bytes, scope: dict, *, registering: bool) -> AppReport:
    owner = token_owner(header(scope, b"authorization"))
    return parse_report(jsonio.loads(body), registering=registering, owner=owner)


async def _register(body: bytes, scope: dict) -> tuple[int, dict[str, Any]]:
    report = _report(body, scope, registering=True)
    try:
        app_id, created = await _submit(Write.REGISTER, report, scope)
    except services.TooManyApplications as exc:
        return 403, {"error": str(exc), "app_id": report.app_id}
    return 200, {"status": "ok", "app_id": app_id, "created": created}


async def _heartbeat(body: bytes, scope: dict) -> tuple[int, dict[str, Any]]:
    report = _report(body, scope, registering=False)
    try:
        result = await _submit(Write.HEARTBEAT, report, scope)
    except services.TooManyApplications as exc:
        return 403, {"error": str(exc), "app_id": report.app_id}
    if result is services.HeartbeatResult.NOT_FOUND:
        return 404, {
            "error": f"no application with app_id {report.app_id}; register first",
            "app_id": report.app_id,
        }
    return 200, {
        "status": "ok",
        "app_id": report.app_id,
        "registered": result is services.HeartbeatResult.REGISTERED,
    }


register = lean_post(_register, app=True)
heartbeat = lean_post(_heartbeat, app=True)

routes = {
    "/api/applications/register": register,
    "/api/applications/heartbeat": heartbeat,
}

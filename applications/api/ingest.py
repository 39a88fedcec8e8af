"""POST /api/applications/register, /heartbeat and /<app_id>/unregister on the
lean lane (see core.lean).

All go through one group-commit writer: a fleet registering at once (a dashboard
restart, a deploy of a thousand agents, a network coming back) or stopping at once
is written in batches, as its heartbeats are, in the order the requests arrived.
The REST views of unregister (applications.api.views) describe it in the schema.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from applications import services
from applications.api.serializers import AppReport, parse_app_id, parse_report
from core import jsonio, ratelimit
from core.lean.http import header, lean_post, limited
from core.lean.writer import get_writer
from core.tokens import token_owner

Write = services.Write


def _write(
    writes: Sequence[tuple[services.Write, AppReport]], now: dt.datetime
) -> list[Any]:
    return services.apply_writes(writes, now=now)


async def _submit(kind: services.Write, report: AppReport | str, scope: dict) -> Any:
    """Hand the write (a report, or an app_id to unregister) to the applications'
    writer; return its result, committed."""
    client = (scope.get("client") or ("?",))[0]
    app_id = report if isinstance(report, str) else report.app_id
    if refused := ratelimit.app_refusal(app_id, client):
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


async def _unregister(body: bytes, scope: dict) -> tuple[int, dict[str, Any]]:
    """POST /api/applications/<app_id>/unregister (no body), or
    /api/applications/unregister {"app_id": ...}, as some clients send it."""
    named = scope["path"].rstrip("/").split("/")[-2]
    if named == "applications":
        data = jsonio.loads(body) if body.strip() else None
        if not isinstance(data, dict) or "app_id" not in data:
            raise jsonio.PayloadError('the body must be {"app_id": "..."}')
        named = data["app_id"]
    app_id = parse_app_id(named)
    if not await _submit(Write.UNREGISTER, app_id, scope):
        return 404, {"error": f"no application with app_id {app_id}"}
    return 200, {"status": "ok", "app_id": app_id}


register = lean_post(_register, app=True)
heartbeat = lean_post(_heartbeat, app=True)
unregister = lean_post(_unregister, app=True)

routes = {
    "/api/applications/register": register,
    "/api/applications/heartbeat": heartbeat,
    "/api/applications/unregister": unregister,
    "/api/applications/{app_id}/unregister": unregister,
}

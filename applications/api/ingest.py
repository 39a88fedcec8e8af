"""POST /api/applications/heartbeat on the lean lane (see core.lean)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from applications import services
from applications.api.serializers import AppReport, parse_report
from core import jsonio, ratelimit
from core.lean.http import Refusal, header, lean_post
from core.lean.writer import get_writer
from core.tokens import token_owner


def _write_heartbeats(
    reports: Sequence[AppReport], now: dt.datetime
) -> list[services.HeartbeatResult]:
    results = services.record_heartbeats(reports, now=now)
    return [results[report.app_id] for report in reports]


async def _heartbeat(body: bytes, scope: dict) -> tuple[int, dict[str, Any]]:
    owner = token_owner(header(scope, b"authorization"))
    report = parse_report(jsonio.loads(body), registering=False, owner=owner)
    if wait := ratelimit.app_wait(report.app_id):
        raise Refusal(
            429,
            ratelimit.app_refusal(report.app_id, wait),
            [(b"retry-after", ratelimit.retry_after(wait).encode())],
        )
    try:
        result = await get_writer("heartbeats", _write_heartbeats).submit(report)
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


heartbeat = lean_post(_heartbeat, app=True)

routes = {"/api/applications/heartbeat": heartbeat}

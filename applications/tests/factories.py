from __future__ import annotations

import datetime as dt

from applications import services
from applications.api.serializers import AppReport

T0 = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def register(app_id: str = "app-1", now: dt.datetime = T0, **fields):
    fields.setdefault("name", "My App")
    fields.setdefault("router_type", "HybridRouter")
    fields.setdefault("version", "1.0.0")
    fields.setdefault("metadata", {"env": "prod"})
    app, _ = services.register_application(AppReport(app_id=app_id, **fields), now=now)
    return app

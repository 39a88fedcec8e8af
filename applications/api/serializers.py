"""The one shape of an application, in and out: REST, the lean lane and events."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from applications.models import Application
from core import validators
from core.jsonio import PayloadError, check_document, dumps
from core.labels import labels as checked_labels

APP_ID_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,128}")


def check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return metadata if it is within the configured depth and size."""
    check_document(metadata, "metadata", max_depth=settings.SOLLOL_METADATA_MAX_DEPTH)
    size = len(dumps(metadata))
    if size > settings.SOLLOL_MAX_METADATA_BYTES:
        raise PayloadError(
            f"metadata is {size} bytes as JSON; at most "
            f"{settings.SOLLOL_MAX_METADATA_BYTES} are kept per application"
        )
    return metadata


@dataclass(frozen=True)
class AppReport:
    """What an application says about itself in a register or heartbeat."""

    app_id: str
    name: str | None = None
    router_type: str | None = None
    version: str | None = None
    metadata: dict[str, Any] | None = None
    owner: str = ""  # fingerprint of the write token (core.tokens.token_owner)
    # The app's labels, replacing what it had; None: it said none, keep them.
    labels: dict[str, str] | None = None


def application_data(app: Application, now: dt.datetime) -> dict[str, Any]:
    """Return the application as the API and the event stream show it."""
    return {
        "app_id": app.app_id,
        "name": app.name,
        "router_type": app.router_type,
        "version": app.version,
        "status": app.get_status(now),
        "start_time": app.start_time.timestamp(),
        "last_heartbeat": app.last_heartbeat.timestamp(),
        "uptime_seconds": round(app.uptime_seconds(now), 3),
        "last_seen_seconds": round(app.last_seen_seconds(now), 3),
        "metadata": app.metadata,
        "labels": app.labels,
    }


def parse_app_id(value: Any) -> str:
    if not isinstance(value, str):
        raise PayloadError("app_id must be a string")
    if not APP_ID_PATTERN.fullmatch(value):
        raise PayloadError(
            "app_id must be 1 to 128 characters from A-Z a-z 0-9 . _ ~ -"
        )
    return value


def parse_report(data: Any, *, registering: bool, owner: str = "") -> AppReport:
    """Validate a register (registering=True) or heartbeat body into an AppReport.

    A register may omit app_id (the server makes one) and must have a name; a
    heartbeat must have app_id and may carry the other fields. Either may carry
    labels (see _labels).
    """
    if not isinstance(data, dict):
        raise PayloadError("request body must be a JSON object")
    if data.get("app_id") is None:
        if not registering:
            raise PayloadError("app_id is required")
        app_id = str(uuid.uuid4())
    else:
        app_id = parse_app_id(data["app_id"])
    name = validators.text(
        data.get("name"),
        "name",
        max_length=Application._meta.get_field("name").max_length,
        default=None,
        strip=True,
    )
    if registering and not name:
        raise PayloadError("name is required")
    if name == "":
        raise PayloadError("name must not be empty")
    metadata = data.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise PayloadError("metadata must be a JSON object")
        check_metadata(metadata)
    return AppReport(
        app_id=app_id,
        name=name,
        router_type=validators.text(
            data.get("router_type"),
            "router_type",
            max_length=100,
            default=None,
            strip=True,
        ),
        version=validators.text(
            data.get("version"), "version", max_length=64, default=None, strip=True
        ),
        metadata=metadata,
        owner=owner,
        labels=_labels(data, metadata),
    )


def _labels(
    data: dict[str, Any], metadata: dict[str, Any] | None
) -> dict[str, str] | None:
    """The labels a report gives: its own `labels`, else its metadata's `labels`
    (all upstream SOLLOL's client can send) if those are valid labels; else None.

    Invalid metadata.labels are only metadata, whatever the app meant by them:
    refusing them would refuse an upstream client's every report.
    """
    if data.get("labels") is not None:
        return checked_labels(data["labels"], "labels")
    given = metadata.get("labels") if metadata else None
    if not isinstance(given, dict):
        return None
    try:
        return checked_labels(given, "metadata.labels")
    except PayloadError:
        return None

"""The fields of rules, silences and channels, checked the same way wherever they
come from (the API, SOLLOL_ALERT_RULES): a bad one is refused by its name."""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

from django.conf import settings

from activity import alerting
from alerts.choices import ChannelKind, Severity
from alerts.models import Channel, Rule
from core import labels
from core.allowlist import literal_refusal
from core.jsonio import PayloadError
from core.validators import text

MAX_SECONDS = 366 * 24 * 3600.0
RULE_NUMBERS = ("threshold", "for_seconds", "repeat_seconds", "window_seconds")


def number(body: dict, field: str, *, low: float = 0.0) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{field} must be a number")
    if not low <= value <= MAX_SECONDS:
        raise PayloadError(f"{field} must be from {low:g} to {MAX_SECONDS:g}")
    return float(value)


def glob(body: dict, field: str, max_length: int) -> str | None:
    value = text(body.get(field), field, max_length=max_length, default=None)
    if value is not None:
        fnmatch.translate(value)  # any text is a glob; this only proves it
    return value


def apply_rule_fields(rule: Rule, body: dict) -> None:
    """Change what body names of rule; refuse a bad field by its name."""
    for field in RULE_NUMBERS:
        if field in body:
            value = number(body, field)
            if value is None and field != "threshold":
                raise PayloadError(f"{field} must be a number")
            setattr(rule, field, value)
    if "severity" in body:
        if body["severity"] not in Severity.values:
            raise PayloadError(f"severity must be one of {', '.join(Severity.values)}")
        rule.severity = body["severity"]
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise PayloadError("enabled must be true or false")
        rule.enabled = body["enabled"]
    if "subjects" in body:
        rule.subjects = glob(body, "subjects", 300) or ""
    if "labels" in body:
        rule.labels = labels.selector(body["labels"])


def rule_defaults(condition: alerting.Condition) -> dict:
    """A new rule's fields, from its condition and the built-in settings."""
    return {
        "kind": condition.kind,
        "severity": condition.severity,
        "threshold": condition.threshold,
        "window_seconds": condition.window,
        "for_seconds": settings.SOLLOL_ALERT_FOR,
        "repeat_seconds": settings.SOLLOL_ALERT_REPEAT,
        "description": condition.label,
    }


def new_rule(body: dict, source: str) -> Rule:
    """A rule of a known kind with that kind's defaults and body's fields."""
    name = text(body.get("name"), "name", max_length=100, default=None, strip=True)
    if not name:
        raise PayloadError("name is required")
    kind = body.get("kind")
    condition = alerting.conditions().get(kind) if isinstance(kind, str) else None
    if condition is None:
        raise PayloadError(
            f"kind must be one of {', '.join(sorted(alerting.conditions()))}"
        )
    rule = Rule(name=name, source=source, **rule_defaults(condition))
    apply_rule_fields(rule, body)
    return rule


def channel_fields(body: dict, channel: Channel) -> None:
    """Check and set the fields body names of a channel made through the API.

    Its address must be one the dashboard may contact (core.allowlist: never
    link-local or a cloud metadata service, and within SOLLOL_ALLOWED_NODE_CIDRS);
    a name is checked again, with every address it resolves to, at each send.
    """
    if "kind" in body:
        if body["kind"] not in ChannelKind.values:
            raise PayloadError(f"kind must be one of {', '.join(ChannelKind.values)}")
        channel.kind = body["kind"]
    for field, longest in (("url", 500), ("recipients", 2000), ("secret", 200)):
        if field in body:
            setattr(channel, field, text(body[field], field, max_length=longest) or "")
    if "rules" in body:
        channel.rules = glob(body, "rules", 300) or ""
    if "min_severity" in body:
        if body["min_severity"] not in Severity.values:
            raise PayloadError(
                f"min_severity must be one of {', '.join(Severity.values)}"
            )
        channel.min_severity = body["min_severity"]
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise PayloadError("enabled must be true or false")
        channel.enabled = body["enabled"]
    if not channel.kind:
        raise PayloadError("kind is required")
    schemes = (
        ("smtp", "smtps") if channel.kind == ChannelKind.EMAIL else ("http", "https")
    )
    if channel.kind == ChannelKind.EMAIL:
        recipients = [r.strip() for r in channel.recipients.split(",") if r.strip()]
        if not recipients or not all("@" in r for r in recipients):
            raise PayloadError("recipients must be e-mail addresses, comma-separated")
        if not channel.url:
            return  # SOLLOL_SMTP_URL
    parts = urlsplit(channel.url)
    if parts.scheme not in schemes or not parts.hostname:
        raise PayloadError(f"url must be a {' or '.join(schemes)} URL with a host")
    refusal = literal_refusal(parts.hostname)
    if refusal:
        raise PayloadError(f"url: {refusal}")

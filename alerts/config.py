"""What the environment sets up: built-in rules, SOLLOL_ALERT_RULES, env channels.

SOLLOL_ALERT_RULES names a YAML or JSON file for those who keep configuration in
git: `{"rules": [{...}, ...]}`, each entry with the API's fields (name, and kind
for a new rule; threshold, for_seconds, window_seconds, repeat_seconds,
severity, enabled, subjects, labels). An entry named like a built-in rule
changes it; the others are rules of source "file", made, changed and removed as
the file says at each start. A bad file stops the alerting with its fault named
(entry and field) in the log, rather than alerting on half of it.

SOLLOL_ALERT_WEBHOOKS (generic JSON webhooks, signed when
SOLLOL_ALERT_WEBHOOK_SECRET is set), SOLLOL_ALERT_EMAIL_TO with SOLLOL_SMTP_URL,
and SOLLOL_ALERTMANAGER_URL become channels of source "env", kept as the
environment says at each start; channels made in the admin or the API are left
alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from django.conf import settings
from django.db import transaction

from alerts.choices import ChannelKind, Source
from alerts.models import Channel, Rule
from alerts.services import ensure_builtin_rules
from alerts.validation import apply_rule_fields, new_rule
from core.jsonio import PayloadError

logger = logging.getLogger(__name__)


class RulesFileError(Exception):
    """SOLLOL_ALERT_RULES cannot be used; the message names the entry and field."""


def read_rules_file(path: str) -> list[dict]:
    try:
        raw = Path(path).read_text()
    except OSError as exc:
        raise RulesFileError(f"{path}: {exc.strerror}") from None
    try:
        data = json.loads(raw) if path.endswith(".json") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise RulesFileError(
            f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}"
        ) from None
    entries = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RulesFileError(f'{path}: the file must hold {{"rules": [{{...}}, ...]}}')
    return entries


def load_rules_file(path: str) -> int:
    """Make the rules as the file says; return how many entries it had."""
    entries = read_rules_file(path)
    named: set[str] = set()
    with transaction.atomic():
        for index, entry in enumerate(entries):
            where = f"{path}: rules[{index}]"
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                raise RulesFileError(f"{where}: name is required")
            if name in named:
                raise RulesFileError(f"{where}: {name} is named twice")
            named.add(name)
            rule = Rule.objects.filter(name=name).first()
            try:
                if rule is None:
                    rule = new_rule(entry, Source.FILE)
                elif rule.source in (Source.BUILTIN, Source.FILE):
                    if "kind" in entry and entry["kind"] != rule.kind:
                        raise PayloadError(f"kind of {name} is {rule.kind}")
                    apply_rule_fields(rule, entry)
                else:
                    raise PayloadError(f"{name} was made through the API or admin")
            except PayloadError as exc:
                raise RulesFileError(f"{where}: {exc}") from None
            rule.save()
        Rule.objects.filter(source=Source.FILE).exclude(name__in=named).delete()
    return len(entries)


def env_channels() -> dict[str, dict]:
    channels: dict[str, dict] = {}
    for number, url in enumerate(settings.SOLLOL_ALERT_WEBHOOKS, start=1):
        channels[f"webhook-{number}"] = {
            "kind": ChannelKind.WEBHOOK,
            "url": url,
            "secret": settings.SOLLOL_ALERT_WEBHOOK_SECRET,
        }
    if settings.SOLLOL_ALERT_EMAIL_TO:
        channels["email"] = {
            "kind": ChannelKind.EMAIL,
            "url": settings.SOLLOL_SMTP_URL,
            "recipients": ",".join(settings.SOLLOL_ALERT_EMAIL_TO),
        }
    if settings.SOLLOL_ALERTMANAGER_URL:
        channels["alertmanager"] = {
            "kind": ChannelKind.ALERTMANAGER,
            "url": settings.SOLLOL_ALERTMANAGER_URL,
        }
    return channels


def sync_env_channels() -> None:
    wanted = env_channels()
    Channel.objects.filter(source=Source.ENV).exclude(name__in=wanted).delete()
    for name, fields in wanted.items():
        Channel.objects.update_or_create(
            name=name, defaults={**fields, "source": Source.ENV, "enabled": True}
        )


_prepared = False


def prepare() -> None:
    """Once a process: the built-in rules exist, the env's channels are current."""
    global _prepared
    if not _prepared:
        ensure_builtin_rules()
        if settings.SOLLOL_ALERT_RULES:
            try:
                count = load_rules_file(settings.SOLLOL_ALERT_RULES)
            except RulesFileError as exc:
                logger.error("alerting stopped: SOLLOL_ALERT_RULES %s", exc)
                raise
            logger.info("alert rules: %d from %s", count, settings.SOLLOL_ALERT_RULES)
        sync_env_channels()
        _prepared = True

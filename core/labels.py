"""Labels: the operator's own words about a node, an RPC backend or an application
(`rack=a`, `env=prod`, `team=search`), and selectors that pick by them.

Labels are a flat {name: value} of text. Names are Prometheus label names
(letters, digits and underscores, not starting with a digit), so they pass to
Alertmanager and Prometheus as they are. A selector is {name: glob}: it picks
what has every name it gives with a value its glob matches (`gpu: "a100*"`).
Alert rules and silences are scoped by selectors (alerts/).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

from core.jsonio import PayloadError
from core.validators import text

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
MOST = 32  # labels of one thing
LONGEST_VALUE = 200


def labels(value: Any, field: str = "labels") -> dict[str, str]:
    """Return value as labels to store; refuse a bad one by its field's name."""
    return _checked(value, field, what="value")


def selector(value: Any, field: str = "labels") -> dict[str, str]:
    """Return value as a selector ({name: glob}); {} picks everything."""
    picked = _checked(value, field, what="glob")
    for glob in picked.values():
        fnmatch.translate(glob)  # any text is a glob; this only proves it
    return picked


def _checked(value: Any, field: str, *, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(
            f'{field} must be an object of names and texts: {{"rack": "a"}}'
        )
    if len(value) > MOST:
        raise PayloadError(f"{field} may have at most {MOST} labels")
    checked = {}
    for name, each in value.items():
        if not NAME.match(name):
            raise PayloadError(
                f"{field}: {name[:70]!r} is not a label name (letters, digits and _, "
                "not starting with a digit, at most 63)"
            )
        checked[name] = text(
            each, f"{field}.{name}", max_length=LONGEST_VALUE, default=None
        )
        if checked[name] is None:
            raise PayloadError(f"{field}.{name} must be a string ({what})")
    return checked


def matches(picked: Mapping[str, str], labelled: Mapping[str, str]) -> bool:
    """Whether labelled has every name of picked with a value its glob matches."""
    for name, glob in picked.items():
        value = labelled.get(name)
        if value is None or not fnmatch.fnmatchcase(value, glob):
            return False
    return True


def configured(
    entries: Iterable[str], setting: str
) -> list[tuple[str, dict[str, str]]]:
    """Parse the operator's `<host:port glob>=<name>=<value>;<name>=<value>` entries
    (SOLLOL_NODE_LABELS): each address glob with the labels it gives."""
    parsed = []
    for entry in entries:
        where, sep, given = entry.partition("=")
        if not sep or not where.strip():
            raise PayloadError(
                f"{setting}: {entry[:100]!r} is not <host:port>=<name>=<value>;..."
            )
        pairs = {}
        for pair in given.split(";"):
            name, sep, value = pair.partition("=")
            if not sep:
                raise PayloadError(
                    f"{setting}: {pair[:100]!r} in {where!r} is not <name>=<value>"
                )
            pairs[name.strip()] = value.strip()
        parsed.append((where.strip(), labels(pairs, f"{setting} {where.strip()}")))
    return parsed

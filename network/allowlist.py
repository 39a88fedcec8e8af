"""Which nodes' addresses are checked before they are contacted (core/allowlist.py).

The operator's own sources (configuration, localhost, the opt-in scan) are trusted;
addresses added through the API or reported by applications are contacted only
when core.allowlist allows every address they resolve to.
"""

from __future__ import annotations

from core.allowlist import Refused, literal_refusal, resolve_allowed
from network.choices import Source

GATED_SOURCES = frozenset({Source.API, Source.APPLICATION})

__all__ = ["GATED_SOURCES", "Refused", "literal_refusal", "resolve_allowed"]

"""Write protection by bearer token, shared by the REST lane and the lean lane."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission


def check_bearer(authorization: str | None) -> tuple[int, str] | None:
    """Return (status, error) when a write must be refused, None when it may pass."""
    tokens = settings.SOLLOL_API_TOKENS
    if not tokens:
        return None
    if not authorization:
        return 401, "this dashboard needs Authorization: Bearer <token> for writes"
    if not bearer_matches(authorization, tokens):
        return 403, "the bearer token is not valid"
    return None


def bearer_matches(authorization: str | None, tokens: list[str]) -> bool:
    """Return whether authorization is "Bearer <one of tokens>" (constant time).

    Every token is compared, always, so timing tells nothing about which matched.
    """
    if not authorization:
        return False
    scheme, _, offered = authorization.partition(" ")
    offered = offered.strip().encode()
    matches = [hmac.compare_digest(offered, token.encode()) for token in tokens]
    return scheme.lower() == "bearer" and any(matches)


def may_read(authorization: str | None, user) -> bool:
    """Return whether a reader gets in: always, unless SOLLOL_READ_TOKEN is set.

    Then a read token or a write token (Authorization: Bearer ...) or a logged-in
    Django user (the page, after /admin/login/) is needed.
    """
    tokens = settings.SOLLOL_READ_TOKENS
    if not tokens:
        return True
    if user is not None and getattr(user, "is_authenticated", False):
        return True
    return bearer_matches(authorization, [*tokens, *settings.SOLLOL_API_TOKENS])


def fingerprint(authorization: str) -> str:
    """Return who a bearer is, without the token: 16 hex digits of its hash."""
    offered = authorization.partition(" ")[2].strip()
    return hashlib.sha256(offered.encode()).hexdigest()[:16]


def token_owner(authorization: str | None) -> str:
    """Return who is writing, for per-token quotas: a fingerprint of the token.

    The token itself is never stored. Without tokens configured every writer is
    the same anonymous owner ("").
    """
    if not settings.SOLLOL_API_TOKENS or not authorization:
        return ""
    return fingerprint(authorization)


class TokenMissing(exceptions.APIException):
    # Not NotAuthenticated: DRF turns that into 403 when no authenticator is set.
    status_code = 401
    default_code = "not_authenticated"


class WriteTokenRequired(BasePermission):
    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        refusal = check_bearer(request.headers.get("Authorization"))
        if refusal is None:
            return True
        status, message = refusal
        if status == 401:
            raise TokenMissing(message)
        raise exceptions.PermissionDenied(message)

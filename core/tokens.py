"""Write protection by bearer token, shared by the REST lane and the lean lane."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user
from django.middleware.csrf import CsrfViewMiddleware
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

from core import ratelimit


class Denied(NamedTuple):
    """Why a write is refused: its status, its error, and for 429 the seconds
    until the client may try again."""

    status: int
    message: str
    retry_after: float = 0.0


def check_bearer(authorization: str | None, client: str | None) -> Denied | None:
    """Return why a write must be refused, None when it may pass.

    A refusal counts against the client's address (SOLLOL_AUTH_FAILURE_RATE):
    past that limit the address's writes without a valid token get 429, while
    those with one pass as ever (many clients may share an address)."""
    tokens = settings.SOLLOL_API_TOKENS
    if not tokens:
        return None
    if not authorization:
        denied = Denied(
            401, "this dashboard needs Authorization: Bearer <token> for writes"
        )
    elif not bearer_matches(authorization, tokens):
        denied = Denied(403, "the bearer token is not valid")
    else:
        return None
    if client and (wait := ratelimit.auth_failure_wait(client)):
        return Denied(
            429,
            f"too many writes without a valid token from {client} "
            f"(SOLLOL_AUTH_FAILURE_RATE); {denied.message}; "
            f"try again in {wait:.1f} s",
            wait,
        )
    return denied


def valid_bearer(authorization: str | None) -> str | None:
    """The fingerprint of a valid token in authorization (a bearer, or a Basic
    password), None without one: whose writes these are, for per-token limits."""
    tokens = settings.SOLLOL_API_TOKENS
    if not tokens or not authorization:
        return None
    authorization = as_bearer(authorization)
    if not bearer_matches(authorization, tokens):
        return None
    return fingerprint(authorization)


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


# Users who may look but not change: non-staff accounts in this group sign in at
# /login/ and read the page and the API; only staff write.
VIEWERS_GROUP = "viewers"


def may_view(user) -> bool:
    """Whether a signed-in user may read the dashboard: staff, or a viewer.

    Reads the database for a non-staff user (their groups): call it from sync code.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if not user.is_active:
        return False
    return user.is_staff or user.groups.filter(name=VIEWERS_GROUP).exists()


def may_read(authorization: str | None, user) -> bool:
    """Return whether a reader gets in: always, unless SOLLOL_READ_TOKEN is set.

    Then a read token or a write token (Authorization: Bearer ...) or a signed-in
    staff user or viewer (the page, after /login/) is needed.
    """
    tokens = settings.SOLLOL_READ_TOKENS
    if not tokens:
        return True
    if bearer_matches(authorization, [*tokens, *settings.SOLLOL_API_TOKENS]):
        return True
    return may_view(user)


def as_bearer(authorization: str | None) -> str | None:
    """Read HTTP Basic credentials as the bearer of their password.

    Upstream SOLLOL's client sends no token of its own; a token put in its
    dashboard URL (http://app:TOKEN@dash:8080) reaches us as Basic auth, which
    the application endpoints accept (only those: a browser replays Basic
    credentials it remembers, so no endpoint the page uses takes them).
    """
    if not authorization:
        return authorization
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "Basic"  # matches no token: 403, not a crash
    user, _, password = decoded.partition(":")
    # http://app:TOKEN@dash, or the token alone as the user: http://TOKEN@dash
    return f"Bearer {password or user}"


def trusted_client(address: str | None) -> bool:
    """Whether a client address is in SOLLOL_TRUSTED_NETWORKS."""
    networks = settings.SOLLOL_TRUSTED_NETWORKS
    if not networks or not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def check_app_write(authorization: str | None, client: str | None):
    """check_bearer for the application endpoints (register, heartbeat,
    unregister): a token may also come as a Basic-auth password, and clients in
    SOLLOL_TRUSTED_NETWORKS write without one."""
    if trusted_client(client):
        return None
    return check_bearer(as_bearer(authorization), client)


def fingerprint(authorization: str) -> str:
    """Return who a bearer is, without the token: 16 hex digits of its hash."""
    offered = authorization.partition(" ")[2].strip()
    return hashlib.sha256(offered.encode()).hexdigest()[:16]


def token_owner(authorization: str | None) -> str:
    """Return who is writing, for per-token quotas: a fingerprint of the token.

    The token itself is never stored. Without tokens configured every writer is
    the same anonymous owner ("").
    """
    authorization = as_bearer(authorization)
    if not settings.SOLLOL_API_TOKENS or not authorization:
        return ""
    return fingerprint(authorization)


class TokenMissing(exceptions.APIException):
    # Not NotAuthenticated: DRF turns that into 403 when no authenticator is set.
    status_code = 401
    default_code = "not_authenticated"


def staff_user(request) -> bool:
    """Whether the page's own session is a staff user's (signed in at /login/)."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def _session_is_staff(request) -> bool:
    if not hasattr(request, "session"):
        return False
    user = get_user(request)
    return bool(user.is_authenticated and user.is_staff)


def may_write(request) -> bool:
    """Whether the page may offer its writes (acknowledge, silence) to this viewer:
    without tokens anyone may write; with them, a staff user's session may."""
    return not settings.SOLLOL_API_TOKENS or staff_user(request)


def _csrf_refusal(request) -> str | None:
    """Why a session's write fails Django's CSRF check, or None when it passes."""
    check = CsrfViewMiddleware(lambda _: None)
    check.process_request(request)
    response = check.process_view(request, None, (), {})
    return None if response is None else "CSRF check failed: reload the page"


def _refuse(refusal: Denied | None) -> bool:
    if refusal is None:
        return True
    if refusal.status == 401:
        raise TokenMissing(refusal.message)
    if refusal.status == 429:
        raise exceptions.Throttled(wait=refusal.retry_after, detail=refusal.message)
    raise exceptions.PermissionDenied(refusal.message)


class AppWriteAllowed(BasePermission):
    """The application endpoints' writes: core.tokens.check_app_write."""

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return _refuse(
            check_app_write(
                request.headers.get("Authorization"), request.META.get("REMOTE_ADDR")
            )
        )


class WriteTokenRequired(BasePermission):
    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if settings.SOLLOL_API_TOKENS and not request.headers.get("Authorization"):
            # The page's writes: a staff user's session, with its CSRF token.
            # DRF has set the request's user to its own (none): read the session.
            django_request = request._request
            if _session_is_staff(django_request):
                refusal = _csrf_refusal(django_request)
                if refusal:
                    raise exceptions.PermissionDenied(refusal)
                return True
        return _refuse(
            check_bearer(
                request.headers.get("Authorization"), request.META.get("REMOTE_ADDR")
            )
        )

"""Basic-auth credentials read as a bearer token (the application endpoints)."""

from __future__ import annotations

import base64

from core.tokens import as_bearer


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_the_password_or_a_lone_user_is_the_token_and_garbage_matches_nothing():
    assert as_bearer(basic("app:s3cret")) == "Bearer s3cret"
    assert as_bearer(basic("s3cret:")) == "Bearer s3cret"  # http://s3cret@dash
    assert as_bearer(basic("app:pa:ss")) == "Bearer pa:ss"
    assert as_bearer("Basic %%%") == "Basic"  # not base64: no token, no crash
    assert as_bearer("Bearer t") == "Bearer t" and as_bearer(None) is None

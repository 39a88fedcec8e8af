from __future__ import annotations

import pytest

from applications.choices import AppStatus
from applications.tests.factories import T0, register, seconds

pytestmark = pytest.mark.django_db


def test_it_is_active_until_the_stale_deadline():
    app = register(now=T0)
    assert app.get_status(T0) == AppStatus.ACTIVE
    assert app.get_status(T0 + seconds(29.999)) == AppStatus.ACTIVE
    assert app.get_status(T0 + seconds(30)) == AppStatus.STALE


def test_it_expires_at_the_removal_deadline():
    app = register(now=T0)
    assert not app.is_expired(T0 + seconds(59.9))
    assert app.is_expired(T0 + seconds(60))


def test_it_measures_uptime_and_last_seen_from_stored_instants():
    app = register(now=T0)
    assert app.uptime_seconds(T0 + seconds(90)) == 90
    assert app.last_seen_seconds(T0 + seconds(12.5)) == 12.5
    # A clock that steps backwards never shows negative ages.
    assert app.last_seen_seconds(T0 - seconds(5)) == 0

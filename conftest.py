"""Suite-wide fixtures: every test leaves no writer thread or connection behind."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config) -> None:
    # The suite's own log records must not become rows in the test database behind
    # the tests' backs (pytest-django has loaded the settings by now); live servers
    # started by the tests capture their logs as a real server does.
    from django.conf import settings

    settings.SOLLOL_CAPTURE_LOGS = False
    # A gateway in the test's own process writes its records with the test's
    # database connection settings, in a thread; live servers use their process.
    settings.SOLLOL_GATEWAY_RECORDER = "thread"


def require(available: bool, reason: str) -> None:
    """Skip a test whose outside service or binary is missing; in CI, fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _stop_writers():
    yield
    from core.lean.writer import stop_writers

    stop_writers()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Each test starts with full buckets: what one test spent (an app's
    heartbeats, a client's writes) must not slow the next one down."""
    from core import ratelimit

    ratelimit.forget_buckets()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let the test database be dropped even if a worker thread kept a session open.

    Threads of async tests (sync_to_async's executor) hold pooled connections that
    the test runner cannot close; on PostgreSQL they would keep our own test
    database from being dropped.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.close()

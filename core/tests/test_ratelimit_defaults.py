"""The default write limits played forward on a clock of the test's own.

The issue's yardstick: 5,000 well-behaved apps behind one address (a NAT, a
Kubernetes node), each heartbeating and reporting its requests every second, are
never refused, nor are 5,000 apps registering at once (a restart); one app in a
loop is held to its own rate; a flood from one address stops at the flood guard,
and a flood of invented app ids at the new-app limit.
tests/test_many_apps_one_address.py runs 1,000 apps through a live server; 5,000 a
second is more than this 2-CPU machine serves, so the limits' arithmetic is
checked here with the limiter the server uses.
"""

from __future__ import annotations

from django.conf import settings

from core.ratelimit import RateLimiter

ADDRESS = "127.0.0.9"  # one address many apps sit behind (a key here, never contacted)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock) -> tuple[RateLimiter, RateLimiter]:
    """The per-address flood guard and the per-app limit, as configured by default."""
    return (
        RateLimiter(settings.SOLLOL_WRITE_RATE, settings.SOLLOL_WRITE_BURST, clock),
        RateLimiter(
            settings.SOLLOL_APP_WRITE_RATE, settings.SOLLOL_APP_WRITE_BURST, clock
        ),
    )


def test_five_thousand_apps_behind_one_address_are_never_refused():
    clock = Clock()
    address, per_app = limits(clock)
    reports = RateLimiter(
        settings.SOLLOL_APP_REPORT_RATE, settings.SOLLOL_APP_REPORT_BURST, clock
    )
    apps, seconds, refused = 5000, 30, 0
    for second in range(seconds):
        for i in range(apps):
            clock.now = second + i / apps
            # A heartbeat (the address's and the app's limits), then a report of
            # its requests and one of its log lines (the address's and the app's).
            refused += bool(address.wait(ADDRESS)) + bool(per_app.wait(f"agent-{i}"))
            for _ in range(2):
                refused += bool(address.wait(ADDRESS))
                refused += bool(reports.wait(f"agent-{i}"))
    assert refused == 0


def test_an_app_in_a_loop_is_held_to_its_own_rate_and_its_neighbours_are_not():
    clock = Clock()
    _, per_app = limits(clock)
    allowed = 0
    waits = []
    for i in range(10_000):  # 1,000 a second for 10 s
        clock.now = i / 1000
        wait = per_app.wait("looping")
        allowed += not wait
        if wait:
            waits.append(wait)
        if i % 1000 == 0:
            assert per_app.wait(f"neighbour-{i}") == 0
    rate, burst = settings.SOLLOL_APP_WRITE_RATE, settings.SOLLOL_APP_WRITE_BURST
    assert burst + rate * 10 - 1 <= allowed <= burst + rate * 10 + 1
    # What Retry-After says: never more than one token's time.
    assert 0 < max(waits) <= 1 / rate


def test_a_flood_from_one_address_stops_at_the_flood_guard():
    clock = Clock()
    address, _ = limits(clock)
    rate, burst = settings.SOLLOL_WRITE_RATE, settings.SOLLOL_WRITE_BURST
    offered = int(rate * 2)  # twice the guard's rate, for 5 s
    allowed = 0
    for i in range(offered * 5):
        clock.now = i / offered
        allowed += not address.wait(ADDRESS)
    assert allowed <= burst + rate * 5 + 1
    assert allowed >= burst + rate * 5 - offered / 1000  # refused only beyond it


def test_a_fleet_registering_at_once_is_let_in_and_invented_ids_are_held():
    clock = Clock()
    new_apps = RateLimiter(
        settings.SOLLOL_NEW_APP_RATE, settings.SOLLOL_NEW_APP_BURST, clock
    )
    rate, burst = settings.SOLLOL_NEW_APP_RATE, settings.SOLLOL_NEW_APP_BURST
    # 5,000 apps behind one address register within a second, after a restart.
    for i in range(5000):
        clock.now = i / 5000
        assert new_apps.wait(ADDRESS) == 0
    # An address inventing 2,000 ids a second for 10 s gets the burst, then the rate.
    clock.now, allowed = 100.0, 0
    for i in range(20_000):
        clock.now = 100.0 + i / 2000
        allowed += not new_apps.wait("127.0.0.10")
    assert burst + rate * 10 - 1 <= allowed <= burst + rate * 10 + 1

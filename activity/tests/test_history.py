"""History: measurements kept, rolled up into minutes and hours, read back whole.

Written to the real database (SQLite here, PostgreSQL in CI's second run),
through the node series the network registers; network/tests/test_history.py
measures a simulated fleet as the product does.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from activity import history
from activity.history import HOUR, MINUTE, Point
from activity.models import SeriesHour, SeriesMark, SeriesMeasurement, SeriesMinute

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)  # an hour's start
RETENTION = {0: 2 * 86400.0, MINUTE: 14 * 86400.0, HOUR: 365 * 86400.0}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def measure(seconds: float, *points: Point) -> None:
    history.record("node", points, at=at(seconds))


def test_closed_minutes_are_summed_once_and_the_open_one_waits():
    for s in range(0, 150, 5):  # 2.5 minutes of probes every 5 s
        measure(s, Point(subject=7, up=s < 60, value=10.0 + s, gauge=s * 1000, count=1))
    made = history.roll_up(now=at(150) + history.GRACE)
    assert made[MINUTE] == 2  # 10:00 and 10:01; 10:02 is not over
    minutes = {p.at: p for p in SeriesMinute.objects.order_by("at")}
    first, second = minutes[at(0)], minutes[at(60)]
    assert (first.n, first.up, second.n, second.up) == (12, 12, 12, 0)
    assert first.value_sum == sum(10.0 + s for s in range(0, 60, 5))
    assert (first.value_max, first.gauge) == (65.0, 55_000)
    # Again at once: nothing new to sum, nothing summed twice.
    assert history.roll_up(now=at(150) + history.GRACE).get(MINUTE) is None
    assert SeriesMinute.objects.count() == 2
    assert SeriesMark.objects.get(step=MINUTE).until == at(120)


def test_an_hour_is_summed_from_its_minutes_once_it_is_over():
    for s in range(0, 3600 + 60, 30):
        measure(s, Point(subject=1, up=True, value=5.0))
    history.roll_up(now=at(3599) + history.GRACE)
    assert not SeriesHour.objects.exists()
    assert SeriesMinute.objects.count() == 59
    history.roll_up(now=at(3600) + history.GRACE)
    hour = SeriesHour.objects.get()
    assert (hour.at, hour.n, hour.up, hour.value_sum) == (at(0), 120, 120, 600.0)


def test_a_chart_takes_the_step_that_fits_its_window_and_is_whole_to_now():
    node = history.get("node")
    with override_settings(SOLLOL_PROBE_INTERVAL=5.0):
        assert history.choose_step(node, 3600, retention=RETENTION) == 0
        assert history.choose_step(node, 86400, retention=RETENTION) == MINUTE
        assert history.choose_step(node, 7 * 86400, retention=RETENTION) == HOUR
        assert history.choose_step(node, 30 * 86400, retention=RETENTION) == HOUR
    for s in range(0, 7200, 10):
        measure(s, Point(subject=3, up=s < 3600, value=float(s // 3600 + 1)))
    history.roll_up(now=at(5400))  # the minutes to 11:29, the first hour
    assert SeriesHour.objects.count() == 1

    answer = history.history(
        "node", 3, window=30 * 86400, now=at(7200), retention=RETENTION
    )
    assert answer["resolution"] == "hour"
    # The second hour is not rolled up yet: it is summed from its minutes and
    # its measurements, so the chart reaches the last one.
    assert [p["t"] for p in answer["points"]] == [
        at(0).timestamp(),
        at(3600).timestamp(),
    ]
    first, second = answer["points"]
    assert (first["usable"], first["latency_ms"], first["n"]) == (1.0, 1.0, 360)
    assert (second["usable"], second["latency_ms"], second["n"]) == (0.0, 2.0, 360)
    assert answer["availability"] == 0.5

    day = history.history("node", 3, window=86400, now=at(7200), retention=RETENTION)
    assert day["resolution"] == "minute" and len(day["points"]) == 120
    assert sum(p["n"] for p in day["points"]) == 720


def test_availability_is_summed_per_subject_across_steps():
    for s in range(0, 7200, 60):
        measure(s, Point(subject=1, up=True), Point(subject=2, up=s % 120 == 0))
    history.roll_up(now=at(7200))
    for s in range(7200, 7500, 60):  # recent, not rolled up
        measure(s, Point(subject=1, up=False), Point(subject=2, up=False))
    shares = history.availability(
        "node", window=3 * 3600, now=at(7500), retention=RETENTION
    )
    assert shares == {1: (120, 125), 2: (60, 125)}


def test_each_step_is_kept_for_its_retention():
    measure(0, Point(subject=1, up=True))
    history.roll_up(now=at(3600 * 2))
    kept = [
        table.objects.count() for table in (SeriesMeasurement, SeriesMinute, SeriesHour)
    ]
    assert kept == [1, 1, 1]  # the measurement, its minute, its hour
    pruned = history.prune(now=at(2 * 86400 + 1), retention=RETENTION)
    assert pruned == {0: 1, MINUTE: 0, HOUR: 0}
    assert history.prune(now=at(365 * 86400 + 1), retention=RETENTION) == {
        0: 0, MINUTE: 1, HOUR: 1,
    }  # fmt: skip


def test_registering_a_taken_name_or_code_fails():
    with pytest.raises(ValueError):
        history.register(history.Series("node", 99, lambda: 5.0))
    with pytest.raises(ValueError):
        history.register(history.Series("other", 1, lambda: 5.0))


def test_many_subjects_at_once_get_one_step_and_only_those_asked_for():
    subjects = list(range(1, 602))  # more than are listed in SQL
    for s in (0, 5):
        measure(s, *(Point(subject=i, up=True, value=float(i)) for i in subjects))
    measure(0, Point(subject=999, up=True, value=1.0))  # a node no longer known
    answer = history.history_many(
        "node", subjects, window=60, now=at(10), retention=RETENTION
    )
    assert set(answer["subjects"]) == set(subjects)
    assert [p["latency_ms"] for p in answer["subjects"][600]] == [600.0, 600.0]
    # A day for 601 subjects: hour steps (the budget is 60,000 points in all).
    day = history.history_many(
        "node", subjects, window=86400, now=at(10), retention=RETENTION
    )
    assert (day["resolution"], len(day["subjects"][1])) == ("hour", 1)


def test_an_hour_is_made_once_from_all_its_minutes_while_minutes_catch_up():
    # Measurements from 10:17 to 12:10, rolled up only now: the minutes catch up
    # an hour a run, so the minute mark stops mid-hour (11:17) in between.
    for s in range(17 * 60, 2 * 3600 + 600, 60):
        measure(s, Point(subject=1, up=True, value=1.0))
    history.roll_up(now=at(2 * 3600 + 600))
    assert SeriesMark.objects.get(step=MINUTE).until == at(77 * 60)
    history.roll_up(now=at(2 * 3600 + 600))
    hours = dict(SeriesHour.objects.values_list("at", "n"))
    assert hours == {at(0): 43, at(3600): 60}  # 10:17-10:59, and all of 11:xx

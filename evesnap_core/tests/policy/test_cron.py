"""The cron parser and its fire times, against hand-checked cases and brute force."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evesnap_core.policy.cron import CronError, parse_cron


def test_fields_lists_ranges_steps_and_names() -> None:
    c = parse_cron("*/15 9-17/4 1,15 jan-mar mon-fri")
    assert c.minutes == (0, 15, 30, 45)
    assert c.hours == (9, 13, 17)
    assert c.days == {1, 15}
    assert c.months == {1, 2, 3}
    assert c.weekdays == {1, 2, 3, 4, 5}
    assert c.day_or  # both day fields restricted
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)
    assert parse_cron("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert parse_cron("@hourly").minutes == (0,) and parse_cron("@daily").hours == (0,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("* * * *", "4 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range"),
        ("* * 0 * *", "day of month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13"),
        ("* * * * 8", "day of week: 8"),
        ("*/0 * * * *", "step '0'"),
        ("5-1 * * * *", "runs backwards"),
        ("a * * * *", "minute: 'a' is not a number"),
        ("* * * foo *", "not a number or a name"),
        ("1,,2 * * * *", "empty list item"),
        ("0 0 30 2 *", "never occurs"),
        ("@often", "unknown shorthand"),
    ],
)
def test_invalid_expressions_name_the_field(text: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(text)


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    c = parse_cron("0 0 13 * fri")  # the 13th OR any Friday (cron's rule)
    assert c.day_matches(datetime(2026, 12, 13).date())  # a Sunday
    assert c.day_matches(datetime(2026, 12, 4).date())  # a Friday
    assert not c.day_matches(datetime(2026, 12, 5).date())
    star = parse_cron("0 0 */2 * fri")  # "*..." day of month: both must match
    assert not star.day_matches(datetime(2026, 12, 4).date())  # Friday the 4th: even day, not in 1,3,5..
    assert star.day_matches(datetime(2026, 12, 11).date())


def test_previous_and_next() -> None:
    c = parse_cron("30 2 * * *")
    at = datetime(2026, 12, 1, 4, 10)
    assert c.previous(at) == datetime(2026, 12, 1, 2, 30)
    assert c.previous(datetime(2026, 12, 1, 2, 30, 59)) == datetime(2026, 12, 1, 2, 30)  # at counts
    assert c.previous(datetime(2026, 12, 1, 2, 29)) == datetime(2026, 11, 30, 2, 30)
    assert c.next(at) == datetime(2026, 12, 2, 2, 30)
    assert c.next(datetime(2026, 12, 2, 2, 30)) == datetime(2026, 12, 3, 2, 30)  # strictly after
    leap = parse_cron("0 12 29 2 *")
    assert leap.next(datetime(2026, 3, 1)) == datetime(2028, 2, 29, 12, 0)
    assert leap.previous(datetime(2026, 3, 1)) == datetime(2024, 2, 29, 12, 0)


EXPRS = ["*/7 * * * *", "0 */3 * * *", "15 4 1,15 * *", "0 0 * * mon", "45 23 13 * fri", "0 9-17 * 6 1-5"]


@settings(max_examples=60, deadline=None)
@given(
    expr=st.sampled_from(EXPRS),
    at=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_previous_and_next_agree_with_brute_force(expr: str, at: datetime) -> None:
    c = parse_cron(expr)
    prev = c.previous(at)
    assert prev is not None and c.matches(prev) and prev <= at
    t = prev + timedelta(minutes=1)
    while t <= at:  # nothing matches between previous and at
        assert not c.matches(t)
        t += timedelta(minutes=1)
    nxt = c.next(at)
    assert nxt is not None and c.matches(nxt) and nxt > at
    assert c.previous(nxt) == nxt

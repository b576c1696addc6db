"""Tiered retention (sanoid's model) with a fake clock over many days."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from evesnap_core.policy.model import Retention
from evesnap_core.policy.retention import Candidate, decide

from .helpers import APP, T0, FakeDevice, policy

UTCZ = ZoneInfo("UTC")


def hourly(hours: int, start: datetime = T0) -> list[Candidate]:
    return [Candidate(f"s{i:05d}", start + timedelta(hours=i)) for i in range(hours)]


def kept(rules: Retention, cands: list[Candidate]) -> list[str]:
    return sorted(d.id for d in decide(rules, cands, UTCZ) if d.kept)


def test_hourly_keeps_the_newest_of_the_n_most_recent_hours() -> None:
    half = T0 + timedelta(minutes=30)
    cands = [*hourly(30, half), Candidate("extra", T0 + timedelta(hours=28, minutes=10))]  # two in hour 28
    decisions = {d.id: d for d in decide(Retention(hourly=24), cands, UTCZ)}
    assert kept(Retention(hourly=24), cands) == [f"s{i:05d}" for i in range(6, 30)]
    assert "hourly=24: newest of 2026-01-06 05h" in decisions["s00029"].kept_by
    assert "keeps its newest, s00028" in decisions["extra"].reason
    assert "older than the 24 newest periods kept (oldest kept: 2026-01-05 06h)" in decisions["s00005"].reason


def test_daily_weekly_monthly_tiers_over_100_days() -> None:
    cands = hourly(24 * 100)  # 2026-01-05 .. 2026-04-14, one an hour
    rules = Retention(hourly=24, daily=7, weekly=4, monthly=3, yearly=1)
    decisions = decide(rules, cands, UTCZ)
    by_id = {d.id: d for d in decisions}
    keep = [d for d in decisions if d.kept]
    last = cands[-1].created
    # the 24 newest hours
    assert all(by_id[c.id].kept for c in cands[-24:])
    # daily: the 23:00 snapshot of each of the 6 previous days (today's newest is the latest one)
    for back in range(1, 7):
        day_end = (last - timedelta(days=back)).replace(hour=23)
        assert any(d.created == day_end and any(r.startswith("daily=7") for r in d.kept_by) for d in keep)
    assert sum(1 for d in keep if any(r.startswith("weekly") for r in d.kept_by)) == 4
    monthly = sorted(d.created for d in keep if any(r.startswith("monthly") for r in d.kept_by))
    assert monthly == [datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 31, 23, tzinfo=UTC), last]
    assert len(keep) <= 24 + 7 + 4 + 3 + 1
    for d in decisions:
        if not d.kept:
            assert d.reason.startswith("not kept by hourly=24, daily=7, weekly=4, monthly=3, yearly=1: ")
            for tier in ("hourly=24", "daily=7", "weekly=4", "monthly=3", "yearly=1"):
                assert f"{tier}: " in d.reason


def test_latest_and_buckets_in_the_policy_timezone() -> None:
    late = Candidate("late", datetime(2026, 1, 5, 23, 30, tzinfo=UTC))  # Jan 6, 00:30 in Paris
    early = Candidate("early", datetime(2026, 1, 5, 22, 0, tzinfo=UTC))
    assert kept(Retention(daily=5), [late, early]) == ["late"]  # one UTC day
    paris = {d.id for d in decide(Retention(daily=5), [late, early], ZoneInfo("Europe/Paris")) if d.kept}
    assert paris == {"late", "early"}  # two Paris days
    assert kept(Retention(latest=2), hourly(5)) == ["s00003", "s00004"]


def test_incremental_pruning_over_90_days_equals_pruning_everything_at_once() -> None:
    pol = policy(
        """
[default]
schedules = { hourly = "0 * * * *" }
[default.retention]
hourly = 24
daily = 7
weekly = 4
monthly = 2
"""
    )
    device = FakeDevice()
    created: list[datetime] = []
    now = T0
    for _ in range(24 * 90):
        made = device.step(pol, now + timedelta(minutes=random.randint(0, 59)))
        if made.apps[0].create:
            created.append(made.now)
        now += timedelta(hours=1)
    assert len(created) == 24 * 90  # one per hour, however late in the hour the tick came
    everything = [Candidate(str(i), t) for i, t in enumerate(created)]
    expected = sorted(
        d.created
        for d in decide(Retention(hourly=24, daily=7, weekly=4, monthly=2), everything, UTCZ)
        if d.kept
    )
    assert device.times(APP) == expected
    assert 24 + 6 <= len(expected) <= 24 + 7 + 4 + 2


@settings(max_examples=80, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=60 * 24 * 120), min_size=1, max_size=60),
    rules=st.tuples(*[st.integers(0, 6)] * 6).filter(any),
    seed=st.integers(),
)
def test_result_does_not_depend_on_input_order(offsets: list[int], rules: tuple[int, ...], seed: int) -> None:
    retention = Retention(
        **dict(zip(("latest", "hourly", "daily", "weekly", "monthly", "yearly"), rules, strict=True))
    )
    cands = [Candidate(f"id{i}", T0 + timedelta(minutes=m)) for i, m in enumerate(offsets)]
    shuffled = list(cands)
    random.Random(seed).shuffle(shuffled)
    assert decide(retention, cands, UTCZ) == decide(retention, shuffled, UTCZ)
    # what is kept, decided again on its own, is all kept (retention is idempotent)
    keep = [c for c in cands if c.id in {d.id for d in decide(retention, cands, UTCZ) if d.kept}]
    assert all(d.kept for d in decide(retention, keep, UTCZ))

"""The pure planner: schedules that fired, the free-space floor, retention reasons,
sections by UUID or name, determinism under a fake clock."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evesnap_core.policy.planner import NEW, AppFacts, FreeSpace, plan

from .helpers import APP, APP2, PLENTY, T0, FakeDevice, policy

HOURLY = """
[default]
schedules = { hourly = "0 * * * *", nightly = "30 2 * * *" }
[default.retention]
hourly = 3
daily = 2
"""


def test_a_schedule_fires_once_per_fire_time_and_names_itself() -> None:
    device, pol = FakeDevice(), policy(HOURLY)
    first = device.step(pol, T0 + timedelta(minutes=5))
    assert [f.schedule for f in first.apps[0].fired] == ["hourly", "nightly"]  # first run: both due
    assert first.apps[0].fired[0].at == T0
    again = device.step(pol, T0 + timedelta(minutes=50))
    assert not again.apps[0].create and again.apps[0].fired == ()
    assert again.apps[0].next_fire == T0 + timedelta(hours=1) and again.apps[0].next_schedules == ("hourly",)
    later = device.step(
        pol, T0 + timedelta(hours=2, minutes=40)
    )  # 01:00, 02:00 and 02:30 missed: one snapshot
    assert later.apps[0].create and [f.schedule for f in later.apps[0].fired] == ["hourly", "nightly"]
    assert len(device.times()) == 2


def test_every_prune_names_its_rule_and_what_was_kept_instead() -> None:
    device, pol = FakeDevice(), policy(HOURLY)
    for h in range(8):
        made = device.step(pol, T0 + timedelta(hours=h, minutes=1))
    prunes = [p for ap in made.apps for p in ap.prune]
    assert len(prunes) == 1
    assert prunes[0].rule == "hourly=3, daily=2"
    assert prunes[0].reason.startswith(
        "not kept by hourly=3, daily=2: hourly=3: 2026-01-05 04h is older than"
    )
    assert f"daily=2: 2026-01-05 keeps its newest, {NEW}" in prunes[0].reason
    kept = {k.snapshot: k.rules for k in made.apps[0].keep}
    assert kept[NEW] == ("hourly=3: newest of 2026-01-05 07h", "daily=2: newest of 2026-01-05")
    assert len(device.times()) == 3


def test_controller_and_local_snapshots_are_kept_and_never_pruned() -> None:
    device, pol = FakeDevice(), policy(HOURLY.replace("hourly = 3\ndaily = 2", "latest = 1"))
    old = device.add(APP, T0 - timedelta(days=400), origin="controller")
    local = device.add(APP, T0 - timedelta(days=300), origin="local")
    for h in range(30):
        made = device.step(pol, T0 + timedelta(hours=h))
        assert all(p.snapshot not in (old, local) for p in made.apps[0].prune)
    assert {old, local} <= device.ids()
    keep = {k.snapshot: k for k in made.apps[0].keep}
    assert keep[old].rules == ("origin=controller",) and "never prunes" in keep[old].reason
    assert keep[local].origin == "local"


def test_free_space_floor_refuses_the_snapshot_but_still_prunes() -> None:
    device = FakeDevice()
    pol = policy(HOURLY.replace("[default.retention]", 'min_free = "10%"\n[default.retention]'))
    for h in range(4):
        device.step(pol, T0 + timedelta(hours=h))
    low = FreeSpace(free_bytes=50, total_bytes=1000)
    made = device.step(pol, T0 + timedelta(hours=4), low)
    ap = made.apps[0]
    assert not ap.create and ap.fired and ap.refused is not None
    assert "below the floor min_free=10% (100 B)" in ap.refused and "no snapshot taken" in ap.refused
    assert NEW not in {k.snapshot for k in ap.keep}
    assert ap.prune == ()  # three kept: nothing more to prune without the new one
    bytes_floor = policy(HOURLY.replace("[default.retention]", "min_free = 2048\n[default.retention]"))
    refused = plan(
        bytes_floor, T0 + timedelta(hours=9), device.facts(), FreeSpace(free_bytes=2047, total_bytes=10**9)
    )
    assert refused.apps[0].refused is not None and "min_free=2048 (2.0 KiB)" in refused.apps[0].refused
    ok = plan(
        bytes_floor, T0 + timedelta(hours=9), device.facts(), FreeSpace(free_bytes=2048, total_bytes=10**9)
    )
    assert ok.apps[0].create
    unknown = plan(bytes_floor, T0 + timedelta(hours=9), device.facts(), None)
    assert unknown.apps[0].refused is not None and "unknown" in unknown.apps[0].refused


def test_without_retention_nothing_is_pruned() -> None:
    device, pol = FakeDevice(), policy('[default]\nschedules = { q = "*/15 * * * *" }')
    for m in range(0, 600, 15):
        made = device.step(pol, T0 + timedelta(minutes=m))
        assert made.apps[0].prune == ()
    assert len(device.times()) == 40


def test_sections_by_uuid_and_name_disabled_ambiguous_and_unknown() -> None:
    pol = policy(
        f"""
[default]
schedules = {{ d = "@daily" }}
[apps.shop]
schedules = {{ h = "@hourly" }}
[apps.{APP2}]
enabled = false
[apps.ghost]
enabled = true
"""
    )
    apps = [AppFacts(uuid=APP, name="shop"), AppFacts(uuid=APP2, name="db")]
    made = plan(pol, T0, apps, PLENTY)
    by = {ap.app: ap for ap in made.apps}
    assert by[APP].section == "apps.shop" and [f.schedule for f in by[APP].fired] == ["h"]
    assert not by[APP2].enabled and not by[APP2].create
    assert made.warnings == ("apps.ghost: no app on this device has this UUID or display name",)
    twins = [AppFacts(uuid=APP, name="shop"), AppFacts(uuid=APP2, name="shop")]
    made = plan(policy('[apps.shop]\nschedules = { h = "@hourly" }'), T0, twins, PLENTY)
    assert made.apps == () and "2 apps are named 'shop'" in made.warnings[0]


def test_timezone_applies_to_cron_times() -> None:
    pol = policy('timezone = "America/New_York"\n[default]\nschedules = { d = "0 2 * * *" }')
    made = plan(pol, datetime(2026, 1, 5, 8, 0, tzinfo=UTC), [AppFacts(uuid=APP, name="shop")], PLENTY)
    assert made.apps[0].fired[0].at == datetime(2026, 1, 5, 7, 0, tzinfo=UTC)  # 02:00 EST


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(policy(HOURLY), datetime(2026, 1, 1), [], PLENTY)


@settings(max_examples=40, deadline=None)
@given(hours=st.integers(1, 200), seed=st.integers())
def test_plans_are_deterministic_and_stable_when_replanned_at_the_same_time(hours: int, seed: int) -> None:
    pol = policy(HOURLY.replace("daily = 2", "daily = 2\nweekly = 2"))
    device = FakeDevice({APP: "shop", APP2: "db"})
    rng = random.Random(seed)
    now = T0
    for _ in range(hours):
        now += timedelta(minutes=rng.randint(1, 180))
        device.step(pol, now)
    facts = device.facts()
    shuffled = [
        a.model_copy(update={"snapshots": tuple(rng.sample(a.snapshots, len(a.snapshots)))}) for a in facts
    ]
    rng.shuffle(shuffled)
    assert plan(pol, now, facts, PLENTY) == plan(pol, now, shuffled, PLENTY)
    again = plan(pol, now, facts, PLENTY)  # the step already applied the plan at `now`
    assert all(not ap.create and ap.prune == () for ap in again.apps)


def test_daylight_saving_changes_fire_each_wall_clock_time_once() -> None:
    pol = policy('timezone = "Europe/Paris"\n[default]\nschedules = { s = "30 2 * * *", f = "30 2 * * *" }')
    device = FakeDevice()
    # 2026-03-29: 02:00 -> 03:00 in Paris, 02:30 does not exist; tick every minute around it
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    made_at = [t for m in range(240) if device.step(pol, t := start + timedelta(minutes=m)).apps[0].create]
    assert made_at == [
        start,
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    ]  # the first run, then once at 03:00 local
    # 2026-10-25: 03:00 -> 02:00, 02:30 happens twice: one snapshot
    device = FakeDevice()
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    made_at = [t for m in range(300) if device.step(pol, t := start + timedelta(minutes=m)).apps[0].create]
    assert made_at == [start, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]

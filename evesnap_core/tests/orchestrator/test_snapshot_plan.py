"""The reference's snapshot rules, one by one, on the pure planner."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from evesnap_core.model.config import InstanceOpsCmd, SnapshotConfig, SnapshotDesc, SnapshotType
from evesnap_core.orchestrator.snapshot_plan import KnownSnapshot, plan_snapshots

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDS = [str(uuid.UUID(int=i + 1)) for i in range(10)]
UPDATE = SnapshotType.SNAPSHOT_TYPE_APP_UPDATE


def avail(i: int, minutes: int = 0) -> KnownSnapshot:
    return KnownSnapshot(IDS[i], UPDATE, "available", T0 + timedelta(minutes=minutes))


def req(i: int) -> KnownSnapshot:
    return KnownSnapshot(IDS[i], UPDATE, "requested", T0)


def config(*ids: int, max_snapshots: int = 10, counter: int = 0, active: int | None = None) -> SnapshotConfig:
    return SnapshotConfig(
        snapshots=[SnapshotDesc(id=uuid.UUID(IDS[i]), type=UPDATE) for i in ids],
        max_snapshots=max_snapshots,
        rollback_cmd=InstanceOpsCmd(counter=counter),
        active_snapshot=IDS[active] if active is not None else "",
    )


def test_new_ids_are_requests_and_known_ids_are_idempotent() -> None:
    plan = plan_snapshots([avail(0)], config(0, 1), last_rollback_counter=0)
    assert [str(d.id) for d in plan.new_requests] == [IDS[1]]
    assert plan.delete == [] and plan.cancel == [] and plan.rollback_to is None


def test_removed_available_snapshot_is_deleted() -> None:
    plan = plan_snapshots([avail(0), avail(1, 5)], config(1), last_rollback_counter=0)
    assert plan.delete == [IDS[0]]


def test_no_snapshot_section_deletes_all_and_cancels_requests() -> None:
    plan = plan_snapshots([avail(0), req(1)], None, last_rollback_counter=0)
    assert plan.delete == [IDS[0]] and plan.cancel == [IDS[1]]


def test_removed_request_is_cancelled() -> None:
    plan = plan_snapshots([req(0)], config(), last_rollback_counter=0)
    assert plan.cancel == [IDS[0]]


def test_max_evicts_oldest_available_first_even_the_active_one() -> None:
    known = [avail(0, minutes=30), avail(1, minutes=10), avail(2, minutes=20)]
    plan = plan_snapshots(known, config(0, 1, 2, 3, max_snapshots=3), last_rollback_counter=0)
    assert plan.delete == [IDS[1]]  # the oldest by creation time, not by list order
    assert [str(d.id) for d in plan.new_requests] == [IDS[3]]
    assert plan.warnings == ["Too many snapshots requested. Max allowed: 3"]


def test_max_then_trims_new_requests_from_the_tail_then_requested() -> None:
    plan = plan_snapshots([req(0)], config(0, 1, 2, 3, max_snapshots=1), last_rollback_counter=0)
    assert plan.new_requests == []  # 3 new ones trimmed from the tail
    assert plan.cancel == []  # still 1 == max with the requested one
    plan = plan_snapshots([req(0), req(1)], config(0, 1, 2, max_snapshots=1), last_rollback_counter=0)
    assert plan.new_requests == [] and plan.cancel == [IDS[0]]


def test_deletions_count_before_the_limit() -> None:
    plan = plan_snapshots([avail(0), avail(1, 1)], config(1, 2, max_snapshots=2), last_rollback_counter=0)
    assert plan.delete == [IDS[0]] and [str(d.id) for d in plan.new_requests] == [IDS[2]]
    assert plan.warnings == []


def test_max_zero_deletes_all() -> None:
    plan = plan_snapshots([avail(0), req(1)], config(0, 1, 2, max_snapshots=0), last_rollback_counter=0)
    assert plan.delete == [IDS[0]] and plan.cancel == [IDS[1]] and plan.new_requests == []


def test_rollback_fires_only_on_a_strictly_greater_counter() -> None:
    known = [avail(0)]
    assert plan_snapshots(known, config(0, counter=3, active=0), 3).rollback_to is None
    assert plan_snapshots(known, config(0, counter=2, active=0), 3).rollback_to is None
    plan = plan_snapshots(known, config(0, counter=4, active=0), 3)
    assert plan.rollback_to == IDS[0] and plan.rollback_counter == 4


def test_first_sight_of_an_app_remembers_the_counter_without_rollback() -> None:
    plan = plan_snapshots([avail(0)], config(0, counter=9, active=0), last_rollback_counter=None)
    assert plan.rollback_to is None and plan.rollback_counter == 9


def test_rollback_to_unknown_snapshot_is_an_error_and_stops_processing() -> None:
    plan = plan_snapshots([avail(0), avail(1)], config(0, 2, counter=1, active=5), 0)
    assert plan.error is not None and IDS[5] in plan.error
    assert plan.new_requests == [] and plan.delete == [] and plan.rollback_counter == 1


def test_rollback_to_a_requested_but_not_taken_snapshot_is_an_error() -> None:
    plan = plan_snapshots([req(0)], config(0, counter=1, active=0), 0)
    assert plan.error is not None


def test_eviction_spares_the_rollback_target() -> None:
    known = [avail(0, minutes=0), avail(1, minutes=5)]
    plan = plan_snapshots(known, config(0, 1, 2, max_snapshots=2, counter=1, active=0), 0)
    assert plan.rollback_to == IDS[0]
    assert plan.delete == [IDS[1]]


def test_an_unknown_snapshot_type_is_not_taken_and_the_rest_applies() -> None:
    snaps = config(1, 2)
    snaps.snapshots[0] = SnapshotDesc(id=uuid.UUID(IDS[1]), type=7)
    plan = plan_snapshots([avail(0)], snaps, last_rollback_counter=0)
    assert [str(d.id) for d in plan.new_requests] == [IDS[2]]
    assert plan.delete == [IDS[0]]
    assert plan.warnings == [f"snapshot {IDS[1]}: SnapshotType number 7 is unknown to this device; not taken"]


def test_an_evicted_id_still_listed_is_not_taken_again_until_dropped() -> None:
    """max_snapshots churn: the reference evicts the oldest, then takes it again
    at the next config that still lists it, and evicts another one."""
    known = [avail(0, minutes=0), avail(1, minutes=5)]
    plan = plan_snapshots(known, config(0, 1, 2, max_snapshots=2), last_rollback_counter=0)
    assert plan.delete == [IDS[0]] and [str(d.id) for d in plan.new_requests] == [IDS[2]]
    assert plan.evicted == [IDS[0]]
    # the next config lists the same three: the evicted one is not a new request
    now = [avail(1, minutes=5), avail(2, minutes=10)]
    again = plan_snapshots(now, config(0, 1, 2, max_snapshots=2), 0, evicted=plan.evicted)
    assert again.new_requests == [] and again.delete == [] and again.cancel == []
    assert again.evicted == [IDS[0]]
    assert again.warnings == [
        f"snapshot {IDS[0]} was evicted by max_snapshots; not taken again while the controller lists it"
    ]
    # the controller drops it: forgotten; listed once more later, it is a new request
    dropped = plan_snapshots(now, config(1, 2, max_snapshots=3), 0, evicted=again.evicted)
    assert dropped.evicted == [] and dropped.new_requests == []
    back = plan_snapshots(now, config(0, 1, 2, max_snapshots=3), 0, evicted=dropped.evicted)
    assert [str(d.id) for d in back.new_requests] == [IDS[0]]


def test_a_request_dropped_by_the_limit_is_remembered_too_but_a_trimmed_new_one_is_not() -> None:
    plan = plan_snapshots([req(0), req(1)], config(0, 1, 2, max_snapshots=1), last_rollback_counter=0)
    assert plan.cancel == [IDS[0]] and plan.evicted == [IDS[0]]
    assert IDS[2] not in plan.evicted  # never known: trimmed, not evicted

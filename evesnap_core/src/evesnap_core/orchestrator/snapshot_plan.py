"""What a new SnapshotConfig asks of one app: the reference's rules, as pure logic.

Given what the device knows of an app's snapshots and the snapshot section of a
new config, decide which snapshots to request, cancel, delete and evict, and
whether a rollback fires. Nothing here touches storage, so every rule of the
reference (eve-facts.md, seed 001 "Ensuring Maximum Snapshots Limit") is
tested on its own:

- a snapshot id in the list that the device does not know is a new request; an
  id it knows already is idempotent (a warning, not an error); one whose type
  is a number this version does not know (a newer controller) is not taken, with
  a warning, and the rest of the config applies;
- an available snapshot missing from the list is deleted (reported at once);
  no snapshot section at all deletes every available snapshot;
- a requested snapshot removed from the list before it was taken is cancelled
  (the reference never cancels it);
- ``max_snapshots``: total = available + requested + new - to delete; over the
  limit, warn "Too many snapshots requested. Max allowed: N" and evict available
  snapshots oldest first by creation time (even the active one), then trim new
  requests from the tail, then drop requested ones never triggered; max 0
  deletes all. An id the limit evicted (or dropped) while the controller still
  lists it is remembered and not taken again, until the controller drops it
  from its list (the reference takes it again at the next config: churn);
- a rollback fires only when ``rollback_cmd.counter`` is strictly greater than
  the last value seen; its target must be an available snapshot, else the app
  gets an error and nothing else of that config is processed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from evesnap_core.model.config import SnapshotConfig, SnapshotDesc, SnapshotType

SnapshotState = Literal["requested", "available"]


@dataclass(frozen=True)
class KnownSnapshot:
    """A snapshot the device knows for this app."""

    id: str
    type: SnapshotType
    state: SnapshotState
    created: datetime | None = None
    """When it was taken (available ones) or requested (requested ones)."""


@dataclass
class SnapshotPlan:
    """The decisions for one app and one config."""

    new_requests: list[SnapshotDesc] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    """Available snapshots to delete: gone from the report at once."""
    cancel: list[str] = field(default_factory=list)
    """Requested snapshots dropped before they were taken."""
    rollback_to: str | None = None
    rollback_counter: int | None = None
    """The counter value to remember as seen (set whenever it moved)."""
    evicted: list[str] = field(default_factory=list)
    """Ids to remember as evicted by the limit: listed, not to be taken again."""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    """When set, nothing else of this config is processed for the app."""


def unknown_type_warning(snapshot_id: str, number: int) -> str:
    return f"snapshot {snapshot_id}: SnapshotType number {number} is unknown to this device; not taken"


def evicted_warning(snapshot_id: str) -> str:
    return (
        f"snapshot {snapshot_id} was evicted by max_snapshots; not taken again while the controller lists it"
    )


def too_many_warning(limit: int) -> str:
    return f"Too many snapshots requested. Max allowed: {limit}"


def plan_snapshots(
    known: Sequence[KnownSnapshot],
    config: SnapshotConfig | None,
    last_rollback_counter: int | None,
    evicted: Collection[str] = (),
) -> SnapshotPlan:
    """Decide what `config` asks of an app whose snapshots are `known`.

    `last_rollback_counter` is None for an app seen for the first time: its
    current counter is then remembered without firing a rollback (a counter
    only means "roll back" when it moves). `evicted` are the ids the limit
    evicted before (SnapshotPlan.evicted of the previous plan).
    """
    plan = SnapshotPlan()
    available = [k for k in known if k.state == "available"]
    requested = [k for k in known if k.state == "requested"]
    wanted = list(config.snapshots) if config else []
    wanted_ids = {str(d.id) for d in wanted}
    known_ids = {k.id for k in known}

    counter = config.rollback_cmd.counter if config and config.rollback_cmd else 0
    if last_rollback_counter is None or counter != last_rollback_counter:
        plan.rollback_counter = counter
    if last_rollback_counter is not None and counter > last_rollback_counter:
        target = config.active_snapshot if config else ""
        if target not in {k.id for k in available}:
            plan.error = (
                f"rollback to snapshot {target!r} requested (counter {counter}) "
                "but no such snapshot is available"
            )
            return plan
        plan.rollback_to = target

    plan.evicted = [sid for sid in evicted if sid in wanted_ids and sid not in known_ids]
    for desc in wanted:
        if str(desc.id) in known_ids:
            continue  # idempotent; the caller may log it
        if str(desc.id) in plan.evicted:
            plan.warnings.append(evicted_warning(str(desc.id)))
            continue
        if not isinstance(desc.type, SnapshotType):  # a newer controller's type: not taken
            plan.warnings.append(unknown_type_warning(str(desc.id), int(desc.type)))
            continue
        plan.new_requests.append(desc)
    plan.delete = [k.id for k in available if k.id not in wanted_ids]
    plan.cancel = [k.id for k in requested if k.id not in wanted_ids]
    if plan.rollback_to in plan.delete:
        plan.error = f"rollback target {plan.rollback_to!r} is also removed from the snapshot list"
        plan.rollback_to = None
        return plan

    limit = config.max_snapshots if config else 0
    before = set(plan.delete) | set(plan.cancel)
    _enforce_limit(plan, available, requested, limit)
    plan.evicted += [sid for sid in plan.delete + plan.cancel if sid not in before and sid in wanted_ids]
    return plan


def _enforce_limit(
    plan: SnapshotPlan,
    available: Sequence[KnownSnapshot],
    requested: Sequence[KnownSnapshot],
    limit: int,
) -> None:
    kept_available = [k for k in available if k.id not in plan.delete]
    kept_requested = [k for k in requested if k.id not in plan.cancel]
    total = len(kept_available) + len(kept_requested) + len(plan.new_requests)
    excess = total - limit
    if excess <= 0:
        return
    if limit > 0:
        plan.warnings.append(too_many_warning(limit))
    else:
        plan.warnings.append("max_snapshots is 0: every snapshot of the app is deleted")
    oldest_first = sorted(kept_available, key=lambda k: (k.created is None, k.created or datetime.min))
    for k in oldest_first:
        if excess == 0:
            return
        if k.id == plan.rollback_to:
            continue  # never evict the snapshot being rolled back to
        plan.delete.append(k.id)
        excess -= 1
    while excess and plan.new_requests:
        plan.new_requests.pop()
        excess -= 1
    for k in kept_requested:
        if excess == 0:
            return
        plan.cancel.append(k.id)
        excess -= 1

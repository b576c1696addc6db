"""An app's snapshots as a tree: each records its parent (the snapshot the app's
state descended from when it was taken), and the app has a current snapshot.

Pure functions over an AppRecord: the engine changes the tree, these read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from evesnap_core.records import AppRecord, SnapshotRecord

DeleteScope = Literal["snapshot", "with-descendants", "descendants-only", "metadata-only"]
"""What a local delete takes: the snapshot (its children move up to its parent),
the snapshot and everything below it, only what is below it, or only evesnap's
record of it (the backend's snapshots stay, for an operator to deal with)."""


def delete_targets(record: AppRecord, snap: SnapshotRecord, scope: DeleteScope) -> list[SnapshotRecord]:
    """The snapshots a local delete of `snap` with `scope` takes, deepest first."""
    below = descendants(record, snap.id)
    return {
        "snapshot": [snap],
        "with-descendants": [*below, snap],
        "descendants-only": below,
        "metadata-only": [snap],
    }[scope]


@dataclass
class DeleteOutcome:
    """What a local delete did, snapshot by snapshot."""

    deleted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Waiting for the app to stop (its backends cannot delete live)."""
    failed: dict[str, str] = field(default_factory=dict)
    forgotten: dict[str, list[str]] = field(default_factory=dict)
    """Metadata-only: the record is gone; these backend snapshots stay."""

    def to_json(self) -> dict[str, object]:
        return {
            "deleted": self.deleted,
            "pending": self.pending,
            "failed": self.failed,
            "forgotten": self.forgotten,
        }


@dataclass(frozen=True)
class TreeNode:
    snapshot: SnapshotRecord
    depth: int
    current: bool


def _key(snap: SnapshotRecord) -> tuple[object, ...]:
    return (snap.created or snap.requested, snap.id)


def children(record: AppRecord, parent: str | None) -> list[SnapshotRecord]:
    """Snapshots whose parent is `parent` (None: the roots), oldest first.

    A snapshot whose parent is no longer known is a root: the tree never hides one.
    """
    known = set(record.snapshots)
    found = [
        s
        for s in record.snapshots.values()
        if (s.parent if s.parent in known else None) == parent and s.id != parent
    ]
    return sorted(found, key=_key)


def walk(record: AppRecord) -> Iterator[TreeNode]:
    """Every snapshot, parents before children, siblings oldest first."""
    seen: set[str] = set()

    def visit(snap: SnapshotRecord, depth: int) -> Iterator[TreeNode]:
        if snap.id in seen:  # a cycle in damaged records must not loop forever
            return
        seen.add(snap.id)
        yield TreeNode(snap, depth, snap.id == record.current_snapshot)
        for child in children(record, snap.id):
            yield from visit(child, depth + 1)

    for root in children(record, None):
        yield from visit(root, 0)
    for snap in sorted(record.snapshots.values(), key=_key):  # anything a cycle cut off
        if snap.id not in seen:
            yield from visit(snap, 0)


def descendants(record: AppRecord, snapshot_id: str) -> list[SnapshotRecord]:
    """Everything below `snapshot_id`, deepest first (the order to delete them in)."""
    below: list[SnapshotRecord] = []
    frontier = [snapshot_id]
    seen = {snapshot_id}
    while frontier:
        current = frontier.pop()
        for child in children(record, current):
            if child.id not in seen:
                seen.add(child.id)
                below.append(child)
                frontier.append(child.id)
    depth = {s.id: _depth(record, s) for s in below}
    return sorted(below, key=lambda s: (-depth[s.id], _key(s)))


def _depth(record: AppRecord, snap: SnapshotRecord) -> int:
    depth, seen = 0, {snap.id}
    while snap.parent in record.snapshots and snap.parent not in seen:
        seen.add(snap.parent)
        snap = record.snapshots[snap.parent]
        depth += 1
    return depth

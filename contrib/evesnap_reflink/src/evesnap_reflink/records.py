"""What the backend keeps on disk about a volume: one JSON manifest per volume.

One file per volume (not one per snapshot) so that every change, a snapshot
taken, a rollback moving the head, an export opened, is one atomic_write: a
crash leaves the manifest before the change or after it, never between.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, NonNegativeInt

from evesnap_core.toolkit import after_delete, safe_name

MANIFEST_VERSION = 1


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SnapshotRecord(_Record):
    """One snapshot: the caller's id and the safe file name it maps to."""

    snapshot_id: str
    name: str
    """The toolkit's safe name of the id: the snapshot file is ``snapshots/<name>.raw``."""
    created: datetime
    parent: str | None = None
    """The snapshot the volume's content descended from when this one was taken."""
    volume_size: NonNegativeInt
    """The volume's size when the snapshot was taken (a rollback restores it)."""


class ExportRecord(_Record):
    """A snapshot exposed read-only through a loop device (see exports.py)."""

    export_id: str
    snapshot_id: str
    device: str
    """The read-only loop device, /dev/loopN."""
    link: str
    """The symlink to the device under the caller's runtime folder."""


class VolumeManifest(_Record):
    """Everything known about one volume besides its bytes."""

    version: int = MANIFEST_VERSION
    uuid: UUID
    generation: NonNegativeInt
    size_bytes: NonNegativeInt
    """The size the volume was created with: what an idempotent create compares."""
    head: str | None = None
    """The snapshot the current content descends from (after a rollback: its target)."""
    snapshots: tuple[SnapshotRecord, ...] = ()
    """Oldest first."""
    exports: tuple[ExportRecord, ...] = ()

    def find(self, snapshot_id: str) -> SnapshotRecord | None:
        return next((s for s in self.snapshots if s.snapshot_id == snapshot_id), None)

    def exports_of(self, snapshot_id: str) -> list[ExportRecord]:
        return [e for e in self.exports if e.snapshot_id == snapshot_id]

    def without_snapshot(self, snapshot_id: str) -> VolumeManifest:
        """The manifest after deleting a snapshot (and forgetting its exports): its
        children (and the head) descend from its parent from now on, so no parent
        names a deleted snapshot."""
        if self.find(snapshot_id) is None:
            return self
        lineage = {s.snapshot_id: s.parent for s in self.snapshots}
        parents, head = after_delete(lineage, self.head, snapshot_id)
        kept = tuple(
            s.model_copy(update={"parent": parents[s.snapshot_id]})
            for s in self.snapshots
            if s.snapshot_id in parents
        )
        exports = tuple(e for e in self.exports if e.snapshot_id != snapshot_id)
        return self.model_copy(update={"snapshots": kept, "head": head, "exports": exports})


def snapshot_name(snapshot_id: str) -> str:
    """The safe, deterministic file name of a snapshot id (the toolkit's
    injective, bounded safe name): no id ever becomes a path itself."""
    return safe_name(snapshot_id)

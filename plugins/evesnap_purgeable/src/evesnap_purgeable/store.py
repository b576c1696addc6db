"""Where retained generations live, and the record each snapshot keeps.

Layout, under ``<persist>/vault/snapshots/purgeable/``::

    <uuid>#<generation>/<token>.<format>   the generation's bytes, whole
    <uuid>#<generation>/<token>.json       its record (atomic_write)
    <uuid>#<generation>/current            the snapshot the generation's content
                                           descends from (parent of the next one)

`token` is the toolkit's safe name of the snapshot id: ids are arbitrary
strings (``..``, slashes, anything), so no path is ever built from one. A data file without a
record is what a crash between the two writes leaves; the backend finishes or
removes it, never lists it.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, NonNegativeInt, ValidationError

from evesnap_core import AlreadyExists, ProgressCallback, toolkit
from evesnap_core.toolkit import (
    atomic_write,
    crashpoint,
    durable_unlink,
    ensure_dir,
    fsync_dir,
    parents_first,
    reparented,
    safe_name,
)

Mode = Literal["kept", "reflink", "copy"]
"""How a snapshot got its bytes: moved at a purge, shared extents, or copied."""


class Retained(BaseModel):
    """One snapshot: a generation of a volume kept whole."""

    schema_version: int = 1
    snapshot_id: str
    volume: UUID
    generation: NonNegativeInt
    format: str
    created: datetime
    parent: str | None = None
    mode: Mode
    size_bytes: NonNegativeInt
    """Bytes the retained file holds on disk (the whole volume, sparse-aware)."""

    @property
    def key(self) -> str:
        return f"{self.volume}#{self.generation}"


class RetainedStore:
    def __init__(self, root: Path, log: logging.Logger) -> None:
        self.root = root
        self.log = log

    # ------------------------------------------------------------ paths

    def folder(self, volume: UUID, generation: int) -> Path:
        return self.root / f"{volume}#{generation}"

    def data_path(self, volume: UUID, generation: int, fmt: str, snapshot_id: str) -> Path:
        return self.folder(volume, generation) / f"{safe_name(snapshot_id)}.{fmt}"

    def record_path(self, volume: UUID, generation: int, snapshot_id: str) -> Path:
        return self.folder(volume, generation) / f"{safe_name(snapshot_id)}.json"

    def data_of(self, record: Retained) -> Path:
        return self.data_path(record.volume, record.generation, record.format, record.snapshot_id)

    # ------------------------------------------------------------ records

    def generations(self, volume: UUID) -> list[int]:
        """The generations of `volume` that have a folder here."""
        found = []
        for folder in self.root.glob(f"{volume}#*") if self.root.is_dir() else ():
            suffix = folder.name.rpartition("#")[2]
            if suffix.isdigit():
                found.append(int(suffix))
        return sorted(found)

    def load(self, volume: UUID, generation: int, snapshot_id: str) -> Retained | None:
        path = self.record_path(volume, generation, snapshot_id)
        try:
            record = Retained.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            self.log.warning("unreadable snapshot record %s: %s", path, exc)
            return None
        return record if record.snapshot_id == snapshot_id else None

    def find(self, volume: UUID, snapshot_id: str) -> Retained | None:
        """The snapshot `snapshot_id` of any generation of `volume`: a caller may
        name the volume by its live generation while the snapshot retains an
        older one. Two generations holding one id is refused, never guessed."""
        found = [r for g in self.generations(volume) if (r := self.load(volume, g, snapshot_id)) is not None]
        if len(found) > 1:
            keys = " and ".join(r.key for r in found)
            raise AlreadyExists(f"snapshot {snapshot_id!r} is retained for both {keys}; name one")
        return found[0] if found else None

    def records(self, volume: UUID) -> list[Retained]:
        """Every snapshot of every generation of `volume`, oldest first."""
        found = []
        for generation in self.generations(volume):
            for path in self.folder(volume, generation).glob("*.json"):
                try:
                    found.append(Retained.model_validate_json(path.read_bytes()))
                except (OSError, ValidationError) as exc:
                    self.log.warning("unreadable snapshot record %s: %s", path, exc)
        found.sort(key=lambda r: r.created)
        return parents_first(found, lambda r: r.snapshot_id, lambda r: r.parent)

    def save(self, record: Retained) -> None:
        ensure_dir(self.folder(record.volume, record.generation))
        path = self.record_path(record.volume, record.generation, record.snapshot_id)
        atomic_write(path, record.model_dump_json(indent=1).encode())

    # ------------------------------------------------------------ lineage

    def current(self, volume: UUID, generation: int) -> str | None:
        """The snapshot the generation's content descends from."""
        try:
            return (self.folder(volume, generation) / "current").read_text() or None
        except OSError:
            return None

    def set_current(self, volume: UUID, generation: int, snapshot_id: str | None) -> None:
        folder = ensure_dir(self.folder(volume, generation))
        atomic_write(folder / "current", (snapshot_id or "").encode())

    def remove(self, record: Retained) -> None:
        """Forget `record` and free its bytes; its children take its parent."""
        siblings = [r for r in self.records(record.volume) if r.generation == record.generation]
        moved = reparented({r.snapshot_id: r.parent for r in siblings}, record.snapshot_id)
        for other in siblings:
            if other.snapshot_id in moved:
                self.save(other.model_copy(update={"parent": moved[other.snapshot_id]}))
        if self.current(record.volume, record.generation) == record.snapshot_id:
            self.set_current(record.volume, record.generation, record.parent)
        # bytes first: a crash in between leaves a record a retried delete finds,
        # never bytes nothing points at
        durable_unlink(self.data_of(record))
        crashpoint("purgeable.delete.data_removed")
        durable_unlink(self.record_path(record.volume, record.generation, record.snapshot_id))
        crashpoint("purgeable.delete.record_removed")
        self.prune_folder(self.folder(record.volume, record.generation))

    def prune_folder(self, folder: Path) -> None:
        """Remove a generation's folder once no snapshot is recorded in it, so
        a failed or deleted snapshot leaves nothing behind."""
        if not folder.is_dir() or any(folder.glob("*.json")):
            return
        for leftover in folder.iterdir():
            durable_unlink(leftover)
        with contextlib.suppress(OSError):
            folder.rmdir()
            fsync_dir(folder.parent)


def copy_over(src: Path, dst: Path, progress: ProgressCallback | None = None, point: str = "") -> Mode:
    """Copy `src` over `dst` through a temporary beside it, so that `dst` is
    whole or untouched; `point` names the crash point before the rename."""
    with toolkit.temp_file(dst) as tmp:
        mode: Mode = toolkit.copy_file(src, tmp, progress)
        if point:
            crashpoint(point)
        toolkit.publish(tmp, dst)
    return mode

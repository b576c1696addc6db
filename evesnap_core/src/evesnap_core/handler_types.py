"""The values that cross the boundary between the core and a backend (the plugin API).

Backends receive and return these (pydantic v2 models), never raw dicts, so a
third-party backend gets validation for free and the core can store what a
backend returned without guessing at its shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class Capability(StrEnum):
    """What a backend can do. A hook for an undeclared capability raises NotSupported."""

    CREATE_VOLUME = "create_volume"
    """Create a blank volume of a given size."""
    POPULATE_VOLUME = "populate_volume"
    """Create a volume from a content image file (qcow2 or raw)."""
    SNAPSHOT = "snapshot"
    """Snapshot a volume that no running VM holds."""
    LIVE_SNAPSHOT = "live_snapshot"
    """Snapshot a volume while a VM holds it, without pausing the guest."""
    ATOMIC_GROUP = "atomic_group"
    """Snapshot several volumes of one app atomically in one native operation."""
    ROLLBACK_LATEST = "rollback_latest"
    """Roll back to the newest snapshot (older ones only by destroying newer)."""
    ROLLBACK_ANY = "rollback_any"
    """Roll back to any snapshot and keep the newer ones."""
    CLONE = "clone"
    """Make a new independent volume from a snapshot."""
    READ_ONLY = "read_only"
    """Expose a snapshot read-only to standard tools."""
    LIVE_DELETE = "live_delete"
    """Delete a snapshot while a VM holds the volume."""

    @classmethod
    def rollback(cls) -> frozenset[Capability]:
        """Either rollback capability allows the rollback hooks."""
        return frozenset({cls.ROLLBACK_LATEST, cls.ROLLBACK_ANY})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class BackendInfo(_Frozen):
    """How a backend describes itself (hook `evesnap_backend_info`)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    plugin_api_version: int = Field(ge=1)
    capabilities: frozenset[Capability] = frozenset()
    formats: tuple[str, ...] = ()
    snapshot_space: Literal["copy_on_write", "full_copy"] = "copy_on_write"
    """How a snapshot consumes space: deltas only, or the whole volume."""
    available: bool = True
    unavailable_reason: str = ""
    description: str = ""


class VolumeSpec(_Frozen):
    """A volume the core wants to exist (claim, create, populate)."""

    uuid: UUID
    generation: NonNegativeInt = 0
    format: str = "qcow2"
    size_bytes: NonNegativeInt = 0
    purgeable: bool = False
    """A purge replaces this volume whole with a new generation."""
    readonly: bool = False
    display_name: str = ""
    backend: str | None = None
    """Ask for one backend by name instead of letting backends claim."""

    @property
    def key(self) -> str:
        """The reference's volume key, ``<uuid>#<generation>``."""
        return f"{self.uuid}#{self.generation}"


class LiveAttachment(_Frozen):
    """How a running VM holds a volume, filled in by the app runtime."""

    kind: Literal["qemu"] = "qemu"
    qmp_socket: Path
    node_name: str
    """The format node (e.g. qcow2) of the drive inside QEMU."""
    device: str = ""
    """The guest device's qdev id (what writes as the guest would go through)."""
    vm: str = ""


class VolumeHandle(_Frozen):
    """A volume that exists, as a backend created it."""

    uuid: UUID
    generation: NonNegativeInt
    backend: str
    format: str
    location: str
    """Where the volume lives: a file path, a device or a dataset name."""
    attachment: LiveAttachment | None = Field(default=None, exclude=True)
    """Set by the runtime while a VM holds the volume; never stored."""

    @property
    def key(self) -> str:
        return f"{self.uuid}#{self.generation}"

    def attached(self, attachment: LiveAttachment | None) -> VolumeHandle:
        """The same volume as seen while `attachment` holds it."""
        return self.model_copy(update={"attachment": attachment})


class VolumeDetails(_Frozen):
    handle: VolumeHandle
    format: str
    virtual_size: NonNegativeInt
    actual_size: NonNegativeInt
    dirty: bool = False
    corrupt: bool = False
    problems: tuple[str, ...] = ()


class ContentSource(_Frozen):
    """A content image a volume is built from."""

    path: Path
    format: Literal["qcow2", "raw"]
    sha256: str | None = None


class SnapshotInfo(_Frozen):
    """One snapshot of one volume as the backend knows it."""

    snapshot_id: str
    """The key the core asked for; the app-level snapshot id."""
    name: str
    """The backend's own name (qcow2 tag, ZFS snapshot, retained file)."""
    volume: UUID
    generation: NonNegativeInt
    created: datetime
    parent: str | None = None
    """snapshot_id of the snapshot this one descends from, when the backend knows."""
    size_bytes: NonNegativeInt | None = None
    """Space this snapshot holds now, when the backend can tell."""
    meta: Mapping[str, str] = Field(default_factory=dict)


class RollbackCheck(_Frozen):
    """Whether a rollback can happen now, and what stands in the way."""

    possible: bool
    blockers: tuple[str, ...] = ()
    """snapshot_ids that the rollback would destroy."""
    needs_stop: bool = False
    """The VM holding the volume must stop first."""
    reason: str = ""


class RollbackResult(_Frozen):
    snapshot_id: str
    destroyed: tuple[str, ...] = ()
    """Newer snapshots destroyed because the caller allowed it."""
    live_generation: NonNegativeInt | None = None
    """The generation that now holds the volume (backends that swap generations)."""


class ReadOnlyExport(_Frozen):
    """A snapshot exposed read-only: a path standard tools read, or an NBD socket."""

    export_id: str
    kind: Literal["path", "nbd"]
    path: Path
    format: str = "raw"
    uri: str | None = None


ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes total) during long copies."""


@dataclass(frozen=True)
class BackendContext:
    """What the core hands a backend's factory when it loads it."""

    persist_dir: Path
    options: Mapping[str, str] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("evesnap.backend"))
    peer: Callable[[str], Any] | None = None
    """Look up another loaded backend by name (an ``evesnap_core.backend.Backend``),
    for backends that compose with others; None where the core offers no peers."""

    def option(self, key: str, default: str = "") -> str:
        """One option, e.g. ``pool`` from ``EVESNAP_ZFS_POOL`` for the zfs backend."""
        return self.options.get(key, default)

"""The storage behind the in-memory backend: one object that every backend object
built around it shares, so that tests can read and change the bytes directly.

A test holds the disk, the backend (evesnap_core.testing.memory) only works on
it: volume bytes by volume key, snapshot bytes by (volume key, snapshot id), the
records a real backend keeps on disk (each volume's format and size, each
snapshot's info and parent, each volume's head), the failures a test injects
per operation, and an optional capacity (NoSpace). A new backend object around
the same disk finds everything again, as a restarted agent finds a real
backend's files. Bytes are immutable ``bytes`` objects: a snapshot shares its
volume's object until the volume is written, which is copy-on-write for free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from evesnap_core.errors import NoSpace, VolumeNotFound
from evesnap_core.handler_types import SnapshotInfo

OPERATIONS = frozenset(
    {
        "create_volume",
        "populate_volume",
        "destroy_volume",
        "volume_details",
        "snapshot",
        "snapshot_group",
        "list_snapshots",
        "delete_snapshot",
        "rollback_check",
        "rollback",
        "clone",
    }
)
"""What failures can be injected into: the backend's hooks by their short names."""

ErrorFactory = Callable[[str], BaseException]
"""Builds the exception an injected failure raises, from the volume key."""


@dataclass(frozen=True)
class VolumeMeta:
    """What the backend recorded when it made a volume (a real one keeps it on disk)."""

    format: str
    size: int


@dataclass(eq=False)
class MemoryDisk:
    """Everything the in-memory backends sharing it hold, open to the test."""

    volumes: dict[str, bytes] = field(default_factory=dict)
    """Volume key -> the volume's bytes (a test may replace them whole)."""
    snapshots: dict[tuple[str, str], bytes] = field(default_factory=dict)
    """(volume key, snapshot id) -> the snapshot's bytes."""
    infos: dict[tuple[str, str], SnapshotInfo] = field(default_factory=dict)
    """(volume key, snapshot id) -> what the backend lists, in creation order."""
    meta: dict[str, VolumeMeta] = field(default_factory=dict)
    heads: dict[str, str | None] = field(default_factory=dict)
    """Volume key -> the snapshot its current content descends from."""
    capacity: int | None = None
    """Bytes the disk holds at most (None: unlimited); new bytes past it are NoSpace."""
    failures: dict[str, dict[str | None, ErrorFactory]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    """Held by every hook: one operation at a time (the concurrency rule)."""

    # ------------------------------------------------------------ failure injection

    def fail(
        self,
        operation: str,
        volume_key: str | None = None,
        error: BaseException | ErrorFactory | None = None,
    ) -> None:
        """Make `operation` fail (on `volume_key`, or on every volume) before it
        changes anything, raising `error` (an exception, or a function of the
        volume key making one); by default ``VolumeNotFound(key, "injected ...")``."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}: one of {', '.join(sorted(OPERATIONS))}")
        if error is None:
            factory: ErrorFactory = lambda key: VolumeNotFound(key, f"injected {operation} failure")  # noqa: E731
        elif isinstance(error, BaseException):
            factory = lambda key: error  # noqa: E731
        else:
            factory = error
        self.failures.setdefault(operation, {})[volume_key] = factory

    def heal(self, operation: str | None = None) -> None:
        """Remove the injected failures of `operation`, or all of them."""
        if operation is None:
            self.failures.clear()
        else:
            self.failures.pop(operation, None)

    def check(self, operation: str, volume_key: str) -> None:
        """Raise the failure injected into `operation` for this volume, if any."""
        injected = self.failures.get(operation, {})
        factory = injected.get(volume_key) or injected.get(None)
        if factory is not None:
            raise factory(volume_key)

    # ------------------------------------------------------------ bytes

    def write(self, volume_key: str, offset: int, data: bytes) -> None:
        """Write into a volume as a guest would (snapshots keep their own bytes)."""
        with self.lock:
            old = self.volumes[volume_key]
            end = offset + len(data)
            if end > len(old):
                raise ValueError(f"write of {len(data)} bytes at {offset} past the end of {volume_key}")
            self.volumes[volume_key] = old[:offset] + data + old[end:]

    def read(self, volume_key: str, offset: int, length: int) -> bytes:
        return self.volumes[volume_key][offset : offset + length]

    # ------------------------------------------------------------ space

    def used(self) -> int:
        """Bytes held: each distinct bytes object once (shared ones are not copies)."""
        held = {id(b): len(b) for b in (*self.volumes.values(), *self.snapshots.values())}
        return sum(held.values())

    def free(self) -> int:
        if self.capacity is None:
            return 1 << 62
        return max(0, self.capacity - self.used())

    def require(self, needed: int) -> None:
        """NoSpace unless `needed` new bytes fit."""
        if needed > self.free():
            raise NoSpace("memory disk", needed, self.free())

    # ------------------------------------------------------------ what is held

    def snapshot_ids(self, volume_key: str) -> list[str]:
        """The volume's snapshot ids in creation order."""
        return [sid for key, sid in self.infos if key == volume_key]

    def forget_if_empty(self, volume_key: str) -> None:
        """Drop a volume's records once neither it nor a snapshot of it is left."""
        if volume_key not in self.volumes and not self.snapshot_ids(volume_key):
            self.meta.pop(volume_key, None)
            self.heads.pop(volume_key, None)

    def entries(self) -> dict[str, int]:
        """Everything held, by a name and the bytes it holds: what a real backend
        would leave as files (the conformance suite's leftover cases read it)."""
        found = {f"volume {k}": len(v) for k, v in self.volumes.items()}
        found |= {f"snapshot {k} {sid!r}": len(v) for (k, sid), v in self.snapshots.items()}
        found |= {f"snapshot-record {k} {sid!r}": 0 for k, sid in self.infos}
        found |= {f"volume-record {k}": 0 for k in self.meta}
        found |= {f"head {k}": 0 for k in self.heads}
        return found

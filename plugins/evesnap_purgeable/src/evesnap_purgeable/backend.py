"""The purgeable backend: a snapshot keeps a whole generation of a volume.

A purgeable volume is built from content and a purge replaces it with a new
generation. Its snapshot is the old generation's file itself:

- taken when a purge retires the generation (``retiring``): the file is moved
  into the snapshot store, no byte copied, whatever its size;
- taken while the volume stays in use (an immediate snapshot): a reflink copy
  on XFS or btrfs, else a full copy whose space is checked first.

Rollback copies (reflinks) the retained file back to the generation's own path
``<persist>/vault/volumes/<uuid>#<generation>.<format>``, so the snapshot stays
and a second rollback works; it reports the generation that is live. It never
destroys the generation that was live: the orchestrator decides that.

Format work composes with the format backends: qcow2 volumes are created,
populated, described and destroyed by the qcow2 backend
(``context.peer("qcow2")``); raw files are simple enough to handle here.
Ownership: the live file belongs to the volume (``destroy_volume`` removes
it), a retained file belongs to its snapshot (only ``delete_snapshot`` frees
it).

On a ZFS store the same idea would keep the old generation's zvol as it is
(its name already carries the generation) and hand the dataset work to
evesnap-zfs; that is not implemented yet: this backend serves files.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    BackendInfo,
    BackendUnavailable,
    Capability,
    ContentSource,
    EvesnapError,
    FormatError,
    ProgressCallback,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeLocked,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
    toolkit,
)
from evesnap_core.toolkit import PeerBackend, crashpoint, durable_unlink, ensure_dir, fsync_dir, serialised
from evesnap_purgeable.store import Mode, Retained, RetainedStore, copy_over

NAME = "purgeable"
PLUGIN_API_VERSION = 1
FORMATS = ("qcow2", "raw")
FORMAT_PEERS = {"qcow2": "qcow2"}
"""Formats whose volume work is handed to another backend."""
CRASH_POINTS = (
    "purgeable.snapshot.moved",
    "purgeable.snapshot.copy_written",
    "purgeable.snapshot.copied",
    "purgeable.snapshot.recorded",
    "purgeable.rollback.copy_written",
    "purgeable.rollback.copied",
    "purgeable.delete.data_removed",
    "purgeable.delete.record_removed",
)
"""The step boundaries inside this backend (``evesnap_core.crashpoints``):

- ``snapshot.moved``: a retiring generation's file moved into the store, no
  record yet;
- ``snapshot.copy_written``: an immediate snapshot's copy (reflink or full)
  whole beside the live file, not yet in the store;
- ``snapshot.copied``: the copy in the store, no record yet;
- ``snapshot.recorded``: the record written, the generation's ``current`` not
  yet (nor, for a retired qcow2 generation, the qcow2 backend's notes dropped);
- ``rollback.copy_written``: the retained bytes copied beside the live file,
  which is still the old one;
- ``rollback.copied``: the live file replaced, ``current`` not yet moved;
- ``delete.data_removed``: the retained bytes gone, the record still there;
- ``delete.record_removed``: the record gone, the generation's folder not yet
  pruned.
"""


class PurgeableBackend:
    def __init__(self, context: BackendContext) -> None:
        self.volumes_dir = context.persist_dir / "vault" / "volumes"
        self.store = RetainedStore(context.persist_dir / "vault" / "snapshots" / "purgeable", context.logger)
        self.peer = context.peer
        self.log = context.logger
        self.locks = context.persist_dir / "vault" / "locks" / NAME
        toolkit.sweep(self.volumes_dir)  # what a killed operation left

    def lock_volume(self, volume: VolumeHandle | VolumeSpec) -> AbstractContextManager[None]:
        """One lock per volume uuid (its generations share the snapshot store);
        removed once no generation of it is left, live or retained."""
        uuid = volume.uuid
        return toolkit.volume_lock(
            self.locks / f"{uuid}.lock",
            str(uuid),
            gone=lambda: not self.store.generations(uuid) and not any(self.volumes_dir.glob(f"{uuid}#*")),
        )

    # ================================================================ helpers

    def _live_path(self, volume: UUID, generation: int, fmt: str) -> Path:
        """A generation's live file, computed (a stored location is never trusted)."""
        return self.volumes_dir / f"{volume}#{generation}.{fmt}"

    def _path(self, volume: VolumeHandle | VolumeSpec) -> Path:
        return self._live_path(volume.uuid, volume.generation, volume.format)

    def _handle(self, spec: VolumeSpec) -> VolumeHandle:
        return toolkit.handle_for(spec, NAME, str(self._path(spec)))

    def _format_peer(self, fmt: str) -> PeerBackend | None:
        """The backend that does `fmt`'s format work, or None where this one does it."""
        name = FORMAT_PEERS.get(fmt)
        if name is None:
            return None
        if self.peer is None:
            raise BackendUnavailable(NAME, f"{fmt} volumes need the {name} backend, and no peers are offered")
        peer: PeerBackend = self.peer(name)
        return peer

    @staticmethod
    def _for_peer(volume: VolumeSpec, peer: PeerBackend) -> VolumeSpec:
        return volume.model_copy(update={"backend": peer.name, "purgeable": False})

    @staticmethod
    def _as_peer(volume: VolumeHandle, peer: PeerBackend) -> VolumeHandle:
        return volume.model_copy(update={"backend": peer.name})

    def _adopt(self, volume: VolumeSpec, made: VolumeHandle) -> VolumeHandle:
        """The format backend's volume, as this backend's: it must sit where
        generations live, or moving it into the snapshot store would miss it."""
        handle = self._handle(volume)
        if Path(made.location) != Path(handle.location):
            raise EvesnapError(
                f"the {made.backend} backend made {volume.key} at {made.location}, not {handle.location}"
            )
        return handle

    @staticmethod
    def _check_format(fmt: str) -> None:
        if fmt not in FORMATS:
            raise FormatError(f"the purgeable backend serves {', '.join(FORMATS)} files, not {fmt}")

    @staticmethod
    def _require_stopped(volume: VolumeHandle, what: str) -> None:
        if volume.attachment is not None:
            raise VolumeLocked(volume.key, f"{what} needs the app stopped")

    def _find(self, volume: VolumeHandle, snapshot_id: str) -> Retained:
        record = self.store.find(volume.uuid, snapshot_id)
        if record is None:
            raise SnapshotNotFound(snapshot_id, volume.key)
        return record

    def _info(self, record: Retained) -> SnapshotInfo:
        data = self.store.data_of(record)
        try:
            held = toolkit.allocated_bytes(data)
        except FileNotFoundError:
            held = 0
        return SnapshotInfo(
            snapshot_id=record.snapshot_id,
            name=str(data),
            volume=record.volume,
            generation=record.generation,
            created=record.created,
            parent=record.parent,
            size_bytes=held,
            meta={"mode": record.mode, "retains": record.key},
        )

    # ================================================================ description

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            plugin_api_version=PLUGIN_API_VERSION,
            capabilities=frozenset(
                {
                    Capability.CREATE_VOLUME,
                    Capability.POPULATE_VOLUME,
                    Capability.SNAPSHOT,
                    Capability.ROLLBACK_ANY,
                    Capability.CLONE,
                }
            ),
            formats=FORMATS,
            snapshot_space="full_copy",
            description="purgeable volumes: a snapshot keeps a whole generation (moved or reflinked)",
        )

    @hookimpl(tryfirst=True)
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if volume.purgeable and volume.format in FORMATS else None

    # ================================================================ volumes

    @hookimpl
    @serialised
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        self._check_format(volume.format)
        peer = self._format_peer(volume.format)
        if peer is not None:
            return self._adopt(volume, peer.create_volume(self._for_peer(volume, peer)))
        path = self._path(volume)
        if path.exists():
            if path.stat().st_size != volume.size_bytes:
                raise AlreadyExists(f"volume {volume.key} exists with another size")
            return self._handle(volume)
        ensure_dir(path.parent)
        with toolkit.temp_file(path) as tmp:
            with open(tmp, "xb") as f:  # sparse: a blank volume costs nothing yet
                os.fchmod(f.fileno(), 0o600)
                f.truncate(volume.size_bytes)
                os.fsync(f.fileno())
            toolkit.publish(tmp, path)
        return self._handle(volume)

    @hookimpl
    @serialised
    def evesnap_populate_volume(
        self, volume: VolumeSpec, source: ContentSource, progress: ProgressCallback | None
    ) -> VolumeHandle:
        self._check_format(volume.format)
        peer = self._format_peer(volume.format)
        if peer is not None:
            return self._adopt(volume, peer.populate_volume(self._for_peer(volume, peer), source, progress))
        path = self._path(volume)
        if path.exists():
            return self._handle(volume)
        ensure_dir(path.parent)
        toolkit.populate_raw(source, path, volume.size_bytes, progress)
        return self._handle(volume)

    @hookimpl
    @serialised
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        """The live file only; retained generations belong to their snapshots."""
        self._require_stopped(volume, f"destroying {volume.key}")
        peer = self._format_peer(volume.format)
        if peer is not None:
            peer.destroy_volume(self._as_peer(volume, peer))
        else:
            durable_unlink(self._path(volume))

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        path = self._path(volume)
        if not path.exists():
            raise VolumeNotFound(volume.key, f"{path} does not exist (retired into a snapshot?)")
        peer = self._format_peer(volume.format)
        if peer is not None:
            details = peer.volume_details(self._as_peer(volume, peer))
            return details.model_copy(update={"handle": volume})
        stat = path.stat()
        return VolumeDetails(
            handle=volume,
            format=volume.format,
            virtual_size=stat.st_size,
            actual_size=toolkit.allocated_bytes(path),
        )

    # ================================================================ snapshots

    @hookimpl
    @serialised
    def evesnap_snapshot_volume(
        self, volume: VolumeHandle, snapshot_id: str, progress: ProgressCallback | None, retiring: bool
    ) -> SnapshotInfo:
        self._require_stopped(volume, f"a whole-volume snapshot of {volume.key}")
        live = self._path(volume)
        existing = self.store.find(volume.uuid, snapshot_id)
        if existing is not None:
            if existing.generation != volume.generation:
                raise AlreadyExists(
                    f"snapshot {snapshot_id!r} already retains {existing.key}, not {volume.key}"
                )
            if existing.mode == "kept" and not live.exists():
                self._drop_format_notes(volume)  # a retry may find them left by a failure
            return self._info(existing)
        data = self.store.data_path(volume.uuid, volume.generation, volume.format, snapshot_id)
        mode: Mode
        if retiring and data.exists() and not live.exists():
            mode = "kept"  # a crash came between the move and the record: finish it
        else:
            if not live.exists():
                raise VolumeNotFound(volume.key, f"{live} does not exist")
            durable_unlink(data)  # bytes without a record are never trusted
            mode = self._move(live, data) if retiring else self._copy(live, data, progress)
            crashpoint("purgeable.snapshot.moved" if retiring else "purgeable.snapshot.copied")
        record = Retained(
            snapshot_id=snapshot_id,
            volume=volume.uuid,
            generation=volume.generation,
            format=volume.format,
            created=datetime.now(UTC),
            parent=self.store.current(volume.uuid, volume.generation),
            mode=mode,
            size_bytes=toolkit.allocated_bytes(data),
        )
        self.store.save(record)
        crashpoint("purgeable.snapshot.recorded")
        self.store.set_current(volume.uuid, volume.generation, snapshot_id)
        if mode == "kept":
            self._drop_format_notes(volume)
        self.log.info("snapshot %r retains %s (%s)", snapshot_id, volume.key, mode)
        return self._info(record)

    def _move(self, live: Path, data: Path) -> Mode:
        """The generation's file becomes the snapshot: O(1) at any size."""
        ensure_dir(data.parent)
        try:
            live.rename(data)
        except BaseException:
            self.store.prune_folder(data.parent)
            raise
        fsync_dir(data.parent)
        fsync_dir(live.parent)
        return "kept"

    def _copy(self, live: Path, data: Path, progress: ProgressCallback | None) -> Mode:
        """A copy made beside the live file (same filesystem, so a reflink works)
        and moved into the store once whole: a refusal for space comes before
        anything, even a folder, is made."""
        with toolkit.temp_file(live) as tmp:
            mode: Mode = toolkit.copy_file(live, tmp, progress)
            crashpoint("purgeable.snapshot.copy_written")
            try:
                ensure_dir(data.parent)
                toolkit.publish(tmp, data)
            except BaseException:
                self.store.prune_folder(data.parent)
                raise
        return mode

    def _drop_format_notes(self, volume: VolumeHandle) -> None:
        """The file has left its path for the snapshot store: the format backend
        forgets it (its destroy is idempotent and finds no file to remove)."""
        peer = self._format_peer(volume.format)
        if peer is not None:
            peer.destroy_volume(self._as_peer(volume, peer))

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        """Snapshots of every generation of the volume's uuid, oldest first."""
        return [self._info(r) for r in self.store.records(volume.uuid)]

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        record = self._find(volume, snapshot_id)
        if not self.store.data_of(record).exists():
            return RollbackCheck(possible=False, reason=f"the bytes of {record.key} are missing")
        held = volume.attachment is not None
        return RollbackCheck(possible=not held, needs_stop=held)

    @hookimpl
    @serialised
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        """Bring the retained generation back at its own path; the snapshot stays.

        `volume` may name the live generation or the retained one: the snapshot
        says which generation comes back, and the result names it."""
        self._require_stopped(volume, f"rollback of {volume.key}")
        record = self._find(volume, snapshot_id)
        data = self.store.data_of(record)
        if not data.exists():
            raise SnapshotNotFound(snapshot_id, f"{record.key} (its retained file is missing)")
        live = self._live_path(record.volume, record.generation, record.format)
        ensure_dir(live.parent)
        mode = copy_over(data, live, point="purgeable.rollback.copy_written")
        crashpoint("purgeable.rollback.copied")
        self.store.set_current(record.volume, record.generation, snapshot_id)
        self.log.info("rollback of %s to %r: %s is live (%s)", volume.key, snapshot_id, record.key, mode)
        return RollbackResult(snapshot_id=snapshot_id, live_generation=record.generation)

    @hookimpl
    @serialised
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        record = self.store.find(volume.uuid, snapshot_id)
        if record is None:  # unknown is success; bytes a crash left without a record go
            stray = self.store.data_path(volume.uuid, volume.generation, volume.format, snapshot_id)
            durable_unlink(stray)
            self.store.prune_folder(stray.parent)
            return
        self.store.remove(record)
        self.log.info("snapshot %r deleted: %s freed", snapshot_id, record.key)

    @hookimpl
    @serialised
    def evesnap_clone_snapshot(
        self,
        volume: VolumeHandle,
        snapshot_id: str,
        target: VolumeSpec,
        progress: ProgressCallback | None,
    ) -> VolumeHandle:
        """A new volume holding a retained generation: reflinked or copied, so
        it shares nothing the snapshot's deletion could take away."""
        record = self._find(volume, snapshot_id)
        if target.format != record.format:
            raise FormatError(f"{record.key} is {record.format}; a clone cannot be {target.format}")
        path = self._path(target)
        if path.exists():
            raise AlreadyExists(f"volume {target.key} exists")
        ensure_dir(path.parent)
        copy_over(self.store.data_of(record), path, progress)
        return self._handle(target)

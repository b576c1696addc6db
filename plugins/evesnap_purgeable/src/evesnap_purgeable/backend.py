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
populated and described by the qcow2 backend (``context.peer("qcow2")``); raw
files are simple enough to handle here. Ownership: the live file belongs to
the volume (``destroy_volume`` removes it), a retained file belongs to its
snapshot (only ``delete_snapshot`` removes it).

On a ZFS store the same idea would keep the old generation's zvol as it is
(its name already carries the generation) and hand the dataset work to
evesnap-zfs; that is not implemented yet: this backend serves files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    BackendInfo,
    BackendUnavailable,
    Capability,
    ContentSource,
    FormatError,
    NoSpace,
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
)
from evesnap_core.durable import atomic_write, durable_unlink, ensure_dir, fsync_dir
from evesnap_core.process import run
from evesnap_purgeable import copying

NAME = "purgeable"
PLUGIN_API_VERSION = 1
FORMATS = ("qcow2", "raw")
FORMAT_PEERS = {"qcow2": "qcow2"}
"""Formats whose volume work is handed to another backend."""


class Retained(BaseModel):
    """One snapshot: a generation kept whole."""

    schema_version: int = 1
    snapshot_id: str
    volume: str
    generation: int
    format: str
    created: datetime
    parent: str | None = None
    mode: str
    """How it was made: "kept" (moved at a purge), "reflink" or "copy"."""
    size_bytes: int = 0


def _token(snapshot_id: str) -> str:
    return hashlib.sha256(snapshot_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class PurgeableBackend:
    def __init__(self, context: BackendContext) -> None:
        self.volumes_dir = context.persist_dir / "vault" / "volumes"
        self.store_dir = context.persist_dir / "vault" / "snapshots" / "purgeable"
        self.peer = context.peer
        self.log = context.logger

    # ================================================================ paths

    def _path(self, volume: VolumeHandle | VolumeSpec) -> Path:
        """A generation's live file, computed (a stored location is never trusted)."""
        return self.volumes_dir / f"{volume.uuid}#{volume.generation}.{volume.format}"

    def _dir(self, volume: VolumeHandle) -> Path:
        return self.store_dir / f"{volume.uuid}#{volume.generation}"

    def _retained(self, volume: VolumeHandle, snapshot_id: str) -> tuple[Path, Path]:
        folder, token = self._dir(volume), _token(snapshot_id)
        return folder / f"{token}.{volume.format}", folder / f"{token}.json"

    def _handle(self, spec: VolumeSpec) -> VolumeHandle:
        return VolumeHandle(
            uuid=spec.uuid,
            generation=spec.generation,
            backend=NAME,
            format=spec.format,
            location=str(self._path(spec)),
        )

    def _format_peer(self, fmt: str) -> Any:
        name = FORMAT_PEERS.get(fmt)
        if name is None:
            return None
        if self.peer is None:
            raise BackendUnavailable(NAME, f"{fmt} volumes need the {name} backend, and no peers are offered")
        return self.peer(name)

    def _as_peer(self, volume: VolumeHandle, peer: Any) -> VolumeHandle:
        return volume.model_copy(update={"backend": peer.name})

    def _metas(self, volume: VolumeHandle) -> list[Retained]:
        folder = self._dir(volume)
        if not folder.is_dir():
            return []
        found = []
        for meta in folder.glob("*.json"):
            try:
                found.append(Retained.model_validate_json(meta.read_bytes()))
            except (OSError, ValidationError, ValueError) as exc:
                self.log.warning("unreadable snapshot record %s: %s", meta, exc)
        found.sort(key=lambda r: r.created)
        return found

    def _current(self, volume: VolumeHandle) -> str | None:
        """The snapshot the generation's content descends from (moves on create and rollback)."""
        try:
            return (self._dir(volume) / "current").read_text() or None
        except OSError:
            return None

    def _set_current(self, volume: VolumeHandle, snapshot_id: str | None) -> None:
        ensure_dir(self._dir(volume))
        atomic_write(self._dir(volume) / "current", (snapshot_id or "").encode())

    @staticmethod
    def _require_stopped(volume: VolumeHandle, what: str) -> None:
        if volume.attachment is not None:
            raise VolumeLocked(volume.key, f"{what} needs the app stopped")

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

    def _check_format(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise FormatError(f"the purgeable backend serves {', '.join(FORMATS)} files, not {fmt}")

    @hookimpl
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        self._check_format(volume.format)
        peer = self._format_peer(volume.format)
        if peer is not None:
            peer.create_volume(volume.model_copy(update={"backend": peer.name, "purgeable": False}))
            return self._handle(volume)
        path = self._path(volume)
        ensure_dir(path.parent)
        if path.exists():
            if path.stat().st_size != volume.size_bytes:
                raise AlreadyExists(f"volume {volume.key} exists with another size")
            return self._handle(volume)
        tmp = path.with_name(f".{path.name}.creating")
        with open(tmp, "wb") as f:
            f.truncate(volume.size_bytes)
            os.fsync(f.fileno())
        tmp.chmod(0o600)
        tmp.rename(path)
        fsync_dir(path.parent)
        return self._handle(volume)

    @hookimpl
    def evesnap_populate_volume(
        self, volume: VolumeSpec, source: ContentSource, progress: Any
    ) -> VolumeHandle:
        self._check_format(volume.format)
        peer = self._format_peer(volume.format)
        if peer is not None:
            peer.populate_volume(
                volume.model_copy(update={"backend": peer.name, "purgeable": False}), source, progress
            )
            return self._handle(volume)
        path = self._path(volume)
        if path.exists():
            return self._handle(volume)
        ensure_dir(path.parent)
        tmp = path.with_name(f".{path.name}.creating")
        try:
            if source.format == "raw":
                copying.copy(source.path, tmp, progress)
            else:
                needed = copying.allocated(source.path) * 2
                if needed > copying.free_space(path.parent):
                    raise NoSpace(str(path.parent), needed, copying.free_space(path.parent))
                run(
                    [
                        "qemu-img",
                        "convert",
                        "-f",
                        source.format,
                        "-O",
                        "raw",
                        str(source.path.resolve()),
                        str(tmp.resolve()),
                    ],
                    timeout=3600,
                )
            if volume.size_bytes > tmp.stat().st_size:
                os.truncate(tmp, volume.size_bytes)
            tmp.chmod(0o600)
            tmp.rename(path)
            fsync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return self._handle(volume)

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        """The live file only; retained generations belong to their snapshots."""
        self._require_stopped(volume, "destroying a volume")
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
            details: VolumeDetails = peer.volume_details(self._as_peer(volume, peer))
            return details.model_copy(update={"handle": volume})
        stat = path.stat()
        return VolumeDetails(
            handle=volume, format=volume.format, virtual_size=stat.st_size, actual_size=stat.st_blocks * 512
        )

    # ================================================================ snapshots

    @hookimpl
    def evesnap_snapshot_volume(
        self, volume: VolumeHandle, snapshot_id: str, progress: Any, retiring: bool
    ) -> SnapshotInfo:
        self._require_stopped(volume, "a whole-volume snapshot")
        data, meta = self._retained(volume, snapshot_id)
        if meta.exists():
            return self._info(volume, Retained.model_validate_json(meta.read_bytes()))
        live = self._path(volume)
        if not live.exists():
            raise VolumeNotFound(volume.key, f"{live} does not exist")
        ensure_dir(data.parent)
        parent = self._current(volume)
        if retiring:
            live.rename(data)  # the generation becomes the snapshot: O(1)
            fsync_dir(data.parent)
            fsync_dir(live.parent)
            for leftover in (
                live.with_name(live.name + ".evesnap.json"),
                live.with_name(live.name + ".lock"),
            ):
                durable_unlink(leftover)  # the format backend's notes on the moved file
            mode = "kept"
        else:
            mode = copying.copy(live, data, progress)
        record = Retained(
            snapshot_id=snapshot_id,
            volume=str(volume.uuid),
            generation=volume.generation,
            format=volume.format,
            created=datetime.now(UTC),
            parent=parent,
            mode=mode,
            size_bytes=copying.allocated(data),
        )
        atomic_write(meta, record.model_dump_json().encode())
        self._set_current(volume, snapshot_id)
        return self._info(volume, record)

    def _info(self, volume: VolumeHandle, record: Retained) -> SnapshotInfo:
        data, _ = self._retained(volume, record.snapshot_id)
        return SnapshotInfo(
            snapshot_id=record.snapshot_id,
            name=str(data),
            volume=volume.uuid,
            generation=volume.generation,
            created=record.created,
            parent=record.parent,
            size_bytes=record.size_bytes,
            meta={"mode": record.mode},
        )

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        return [self._info(volume, r) for r in self._metas(volume)]

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        _, meta = self._retained(volume, snapshot_id)
        if not meta.exists():
            raise SnapshotNotFound(snapshot_id, volume.key)
        held = volume.attachment is not None
        return RollbackCheck(possible=not held, needs_stop=held)

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        """Bring the retained generation back at its own path; the snapshot stays."""
        self._require_stopped(volume, "rollback")
        data, meta = self._retained(volume, snapshot_id)
        if not meta.exists() or not data.exists():
            raise SnapshotNotFound(snapshot_id, volume.key)
        live = self._path(volume)
        ensure_dir(live.parent)
        tmp = live.with_name(f".{live.name}.restoring")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        copying.copy(data, tmp)
        tmp.chmod(0o600)
        tmp.rename(live)
        fsync_dir(live.parent)
        self._set_current(volume, snapshot_id)
        return RollbackResult(snapshot_id=snapshot_id, live_generation=volume.generation)

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        data, meta = self._retained(volume, snapshot_id)
        if not meta.exists() and not data.exists():
            return
        removed = Retained.model_validate_json(meta.read_bytes()) if meta.exists() else None
        for record in self._metas(volume):  # children take the deleted one's parent
            if removed is not None and record.parent == snapshot_id:
                record.parent = removed.parent
                atomic_write(self._retained(volume, record.snapshot_id)[1], record.model_dump_json().encode())
        if self._current(volume) == snapshot_id:
            self._set_current(volume, removed.parent if removed else None)
        durable_unlink(data)
        durable_unlink(meta)
        if not self._metas(volume):
            durable_unlink(data.parent / "current")
            with contextlib.suppress(OSError):
                data.parent.rmdir()

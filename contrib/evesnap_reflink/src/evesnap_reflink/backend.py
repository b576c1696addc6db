"""The reflink backend: raw image volumes whose snapshots are reflink copies.

A snapshot is a file sharing every extent with the volume at that moment
(FICLONE); a rollback reflinks the snapshot back over the volume (under a
temporary name, then renamed over it); a clone is one more reflink into a new
volume. All of it costs milliseconds and no data space until the copies
diverge. Where the persist folder's filesystem cannot reflink (ext4, tmpfs,
overlayfs) the backend reports itself unavailable with the reason, rather than
silently making full copies: see README.md.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    BackendInfo,
    BackendUnavailable,
    Capability,
    ContentSource,
    CorruptVolume,
    FormatError,
    ProgressCallback,
    ReadOnlyExport,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotInUse,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeLocked,
    VolumeSpec,
    hookimpl,
)
from evesnap_core.toolkit import durable_unlink, inspect_content, write_content
from evesnap_reflink import NAME, loopdev
from evesnap_reflink.records import ExportRecord, SnapshotRecord, VolumeManifest, snapshot_name
from evesnap_reflink.reflink import clone_file, clone_file_atomic, probe
from evesnap_reflink.store import Store, VolumeFolder, resize

PLUGIN_API_VERSION = 1
FORMAT = "raw"
CAPABILITIES = frozenset(
    {
        Capability.CREATE_VOLUME,
        Capability.POPULATE_VOLUME,
        Capability.SNAPSHOT,
        Capability.ROLLBACK_ANY,
        Capability.CLONE,
    }
)
"""What works wherever reflink does; read_only also needs loop devices."""


class ReflinkBackend:
    """Serves raw volumes kept under ``<persist>/reflink/`` (layout: store.py)."""

    def __init__(self, context: BackendContext) -> None:
        self.store = Store(context.persist_dir / "reflink")
        self.unavailable_reason = self._unavailable_reason()
        self.capabilities = CAPABILITIES | ({Capability.READ_ONLY} if loopdev.usable() else set())

    def _unavailable_reason(self) -> str:
        """Decided once, at load time, by trying a reflink where the store is (or
        will be: its nearest existing folder, so that merely loading the backend,
        e.g. for ``evesnap plugins``, creates nothing)."""
        folder = self.store.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        reason = probe(folder)
        if reason and folder != self.store.root:
            return f"{reason} (volumes would live in {self.store.root})"
        return reason

    # ------------------------------------------------------------ describing

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            plugin_api_version=PLUGIN_API_VERSION,
            capabilities=self.capabilities,
            formats=(FORMAT,),
            snapshot_space="copy_on_write",
            available=not self.unavailable_reason,
            unavailable_reason=self.unavailable_reason,
            description="raw images with reflink (FICLONE) snapshots on XFS or btrfs",
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        """Blank raw volumes only: purgeable ones belong to the purgeable backend,
        which keeps whole generations (a spec may still name this backend)."""
        if volume.format == FORMAT and not volume.purgeable and not self.unavailable_reason:
            return True
        return None

    # ------------------------------------------------------------ volumes

    @hookimpl
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        folder = self._folder(volume)
        with self.store.locked(folder):
            if folder.exists():
                return self._existing(folder, volume.size_bytes)
            manifest = VolumeManifest(
                uuid=volume.uuid, generation=volume.generation, size_bytes=volume.size_bytes
            )
            self.store.build(folder, manifest, lambda image: resize(image, volume.size_bytes))
        return _handle(folder, manifest)

    @hookimpl
    def evesnap_populate_volume(
        self, volume: VolumeSpec, source: ContentSource, progress: ProgressCallback | None
    ) -> VolumeHandle:
        folder = self._folder(volume)
        image = inspect_content(source)
        size = max(volume.size_bytes, image.virtual_size)
        with self.store.locked(folder):
            if folder.exists():
                return self._existing(folder, size)
            manifest = VolumeManifest(uuid=volume.uuid, generation=volume.generation, size_bytes=size)
            self.store.build(folder, manifest, lambda target: write_content(image, target, size, progress))
        return _handle(folder, manifest)

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        """Detach every export first: a loop device would keep the files alive."""
        folder = self._folder(volume)
        with self.store.locked(folder):
            if not folder.path.exists():
                return
            with contextlib.suppress(CorruptVolume):
                for export in folder.read_manifest().exports:
                    _remove_link(Path(export.link))
            loopdev.detach_all_under(folder.path)
            self.store.remove(folder)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        folder = self._folder(volume)
        manifest = folder.read_manifest()
        problems = [
            f"snapshot {s.snapshot_id!r}: file {folder.snapshot_file(s.name)} is missing"
            for s in manifest.snapshots
            if not folder.snapshot_file(s.name).is_file()
        ]
        try:
            stat = folder.image.stat()
        except FileNotFoundError:
            problems.insert(0, f"the image {folder.image} is missing")
            virtual, actual = 0, 0
        else:
            virtual, actual = stat.st_size, stat.st_blocks * 512
        return VolumeDetails(
            handle=volume,
            format=FORMAT,
            virtual_size=virtual,
            actual_size=actual,
            corrupt=bool(problems),
            problems=tuple(problems),
        )

    # ------------------------------------------------------------ snapshots

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        _refuse_attached(volume, "snapshot")
        folder = self._folder(volume)
        name = snapshot_name(snapshot_id)
        with self.store.locked(folder):
            manifest = folder.read_manifest()
            existing = manifest.find(snapshot_id)
            if existing is not None:
                return _info(manifest, existing)
            target = folder.snapshot_file(name)
            clone_file_atomic(folder.image, target)
            try:
                record = SnapshotRecord(
                    snapshot_id=snapshot_id,
                    name=name,
                    created=datetime.now(UTC),
                    parent=manifest.head,
                    volume_size=_verified_copy_size(folder.image, target),
                )
                manifest = manifest.model_copy(
                    update={"snapshots": (*manifest.snapshots, record), "head": snapshot_id}
                )
                folder.write_manifest(manifest)
            except BaseException:
                durable_unlink(target)
                raise
        return _info(manifest, record)

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        manifest = self._folder(volume).read_manifest()
        return [_info(manifest, s) for s in manifest.snapshots]

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        """Any snapshot can be restored and none is ever destroyed; only a VM
        holding the volume stands in the way."""
        manifest = self._folder(volume).read_manifest()
        if manifest.find(snapshot_id) is None:
            raise SnapshotNotFound(snapshot_id, volume.key)
        if volume.attachment is not None:
            return RollbackCheck(possible=False, needs_stop=True, reason="a running VM holds the volume")
        return RollbackCheck(possible=True)

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        _refuse_attached(volume, "rollback")
        folder = self._folder(volume)
        with self.store.locked(folder):
            manifest = folder.read_manifest()
            record = manifest.find(snapshot_id)
            if record is None:
                raise SnapshotNotFound(snapshot_id, volume.key)
            clone_file_atomic(folder.snapshot_file(record.name), folder.image)
            folder.write_manifest(manifest.model_copy(update={"head": snapshot_id}))
        return RollbackResult(snapshot_id=snapshot_id)

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        """A gone volume has no snapshots left to delete, so that succeeds too. An
        export whose loop device is still attached blocks the delete; one whose
        device is gone (after a reboot) is forgotten."""
        folder = self._folder(volume)
        with self.store.locked(folder):
            if not folder.exists():
                return
            manifest = folder.read_manifest()
            record = manifest.find(snapshot_id)
            if record is None:
                return
            snapshot_file = folder.snapshot_file(record.name)
            exports = manifest.exports_of(snapshot_id)
            live = [e for e in exports if loopdev.serving(e.device, snapshot_file)]
            if live:
                raise SnapshotInUse(
                    snapshot_id, [f"read-only export {e.export_id} ({e.device})" for e in live]
                )
            for stale in exports:  # its loop device went away, with a reboot say
                _remove_link(Path(stale.link))
            folder.write_manifest(manifest.without_snapshot(snapshot_id))
            durable_unlink(snapshot_file)

    @hookimpl
    def evesnap_clone_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, target: VolumeSpec
    ) -> VolumeHandle:
        """A reflink copy shares no state with its source: deleting the snapshot or
        the source volume later leaves the clone whole."""
        source = self._folder(volume)
        clone = self._folder(target)
        with self._locked_pair(source, clone):
            record = source.read_manifest().find(snapshot_id)
            if record is None:
                raise SnapshotNotFound(snapshot_id, volume.key)
            size = max(target.size_bytes, record.volume_size)
            if clone.exists():  # the hook specification: never idempotent
                raise AlreadyExists(f"volume {target.key} exists already")
            manifest = VolumeManifest(uuid=target.uuid, generation=target.generation, size_bytes=size)

            def fill(image: Path) -> None:
                clone_file(source.snapshot_file(record.name), image)
                resize(image, size)

            self.store.build(clone, manifest, fill)
        return _handle(clone, manifest)

    @hookimpl
    def evesnap_open_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, runtime_dir: str
    ) -> ReadOnlyExport:
        """A read-only loop device over the snapshot file, reached through a
        symlink under `runtime_dir`; the kernel refuses writes even from root."""
        folder = self._folder(volume)
        with self.store.locked(folder):
            manifest = folder.read_manifest()
            record = manifest.find(snapshot_id)
            if record is None:
                raise SnapshotNotFound(snapshot_id, volume.key)
            export_id = secrets.token_hex(8)
            link = Path(runtime_dir) / f"reflink-{export_id}.raw"
            snapshot_file = folder.snapshot_file(record.name)
            device = loopdev.attach_read_only(snapshot_file)
            try:
                link.symlink_to(device)
                export = ExportRecord(
                    export_id=export_id, snapshot_id=snapshot_id, device=device, link=str(link)
                )
                folder.write_manifest(manifest.model_copy(update={"exports": (*manifest.exports, export)}))
            except BaseException:
                _remove_link(link)
                loopdev.detach_if_serving(device, snapshot_file)
                raise
        return ReadOnlyExport(export_id=export_id, kind="path", path=link, format=FORMAT)

    @hookimpl
    def evesnap_close_snapshot(self, volume: VolumeHandle, export: ReadOnlyExport) -> None:
        folder = self._folder(volume)
        with self.store.locked(folder):
            if not folder.exists():
                return  # destroying the volume closed its exports
            manifest = folder.read_manifest()
            record = next((e for e in manifest.exports if e.export_id == export.export_id), None)
            if record is None:
                return
            snapshot = manifest.find(record.snapshot_id)
            if snapshot is not None:
                loopdev.detach_if_serving(record.device, folder.snapshot_file(snapshot.name))
            _remove_link(Path(record.link))
            remaining = tuple(e for e in manifest.exports if e.export_id != export.export_id)
            folder.write_manifest(manifest.model_copy(update={"exports": remaining}))

    # ------------------------------------------------------------ helpers

    def _folder(self, volume: VolumeHandle | VolumeSpec) -> VolumeFolder:
        """The volume's folder, found from its uuid and generation (never from a
        handle's location, which a caller could have made up)."""
        if self.unavailable_reason:
            raise BackendUnavailable(NAME, self.unavailable_reason)
        if volume.format != FORMAT:
            raise FormatError(f"volume {volume.key} is {volume.format!r}; the reflink backend serves raw")
        return self.store.folder(volume.uuid, volume.generation)

    def _existing(self, folder: VolumeFolder, size: int) -> VolumeHandle:
        """An idempotent create: the volume that is there, if it is the one asked for."""
        manifest = folder.read_manifest()
        if manifest.size_bytes != size:
            raise AlreadyExists(f"volume {folder.key} exists with {manifest.size_bytes} bytes, not {size}")
        return _handle(folder, manifest)

    @contextlib.contextmanager
    def _locked_pair(self, first: VolumeFolder, second: VolumeFolder) -> Iterator[None]:
        """Both volumes' locks, always taken in the same order so that two
        opposite clones cannot deadlock."""
        ordered = sorted({first.path: first, second.path: second}.items())
        with contextlib.ExitStack() as stack:
            for _, folder in ordered:
                stack.enter_context(self.store.locked(folder))
            yield


def _handle(folder: VolumeFolder, manifest: VolumeManifest) -> VolumeHandle:
    return VolumeHandle(
        uuid=manifest.uuid,
        generation=manifest.generation,
        backend=NAME,
        format=FORMAT,
        location=str(folder.image),
    )


def _info(manifest: VolumeManifest, record: SnapshotRecord) -> SnapshotInfo:
    # size_bytes stays None: the extents a reflink copy shares cannot be
    # attributed to one file, so the space a snapshot holds is unknowable here
    return SnapshotInfo(
        snapshot_id=record.snapshot_id,
        name=record.name,
        volume=manifest.uuid,
        generation=manifest.generation,
        created=record.created,
        parent=record.parent,
        meta={"volume_size": str(record.volume_size)},
    )


def _verified_copy_size(image: Path, copy: Path) -> int:
    """The copy's size, after checking it is the volume's (the cheap part of
    "verified before returning"; the filesystem vouches for the extents)."""
    size, expected = copy.stat().st_size, image.stat().st_size
    if size != expected:
        raise CorruptVolume(f"reflink copy {copy} has {size} bytes, the volume {expected}")
    return size


def _refuse_attached(volume: VolumeHandle, what: str) -> None:
    if volume.attachment is not None:
        raise VolumeLocked(volume.key, f"the reflink backend cannot {what} a volume a running VM holds")


def _remove_link(link: Path) -> None:
    if link.is_symlink():
        durable_unlink(link)

"""The ZFS backend: zvols, snapshots through libzfs_core (pyzfs).

Options (environment): ``EVESNAP_ZFS_POOL`` (default ``persist``, as EVE) and
``EVESNAP_ZFS_PREFIX`` (default ``vault``): volumes are
``<pool>/<prefix>/volumes/<uuid>.<generation>``.

ZFS rolls back only to the newest snapshot: rolling back further needs the
newer ones destroyed. That is refused unless the caller passes
``destroy_newer``, and then the destroyed ones are reported (the reference
destroys them silently).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    BackendInfo,
    BackendUnavailable,
    Capability,
    ContentSource,
    EvesnapError,
    NoSpace,
    ReadOnlyExport,
    RollbackBlocked,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
    toolkit,
)
from evesnap_core.toolkit import crashpoint, serialised
from evesnap_zfs import datasets, devices, names
from evesnap_zfs.libzfs import libzfs_core_missing, load_libzfs_core

NAME = "zfs"
PLUGIN_API_VERSION = 1
BUSY_RETRIES = 3
BUSY_PAUSE = 1.0
CRASH_POINTS = (
    "zfs.snapshot.made",
    "zfs.snapshot.parents_set",
    "zfs.rollback.newer_destroyed",
    "zfs.rollback.applied",
    "zfs.delete.destroyed",
)
"""The step boundaries inside this backend (``evesnap_core.crashpoints``):

- ``snapshot.made``: every zvol's snapshot exists (one lzc_snapshot call, so all
  or none), none has its parent property yet;
- ``snapshot.parents_set``: the parent properties are written;
- ``rollback.newer_destroyed``: the snapshots newer than the target are gone,
  the zvol is not rolled back yet (only with destroy_newer);
- ``rollback.applied``: the zvol is rolled back, its page cache not flushed yet;
- ``delete.destroyed``: one zvol's snapshot is destroyed (a group delete has
  others to go).
"""
CAPABILITIES = frozenset(
    {
        Capability.CREATE_VOLUME,
        Capability.POPULATE_VOLUME,
        Capability.SNAPSHOT,
        Capability.ATOMIC_GROUP,
        Capability.ROLLBACK_LATEST,
        Capability.CLONE,
        Capability.READ_ONLY,
    }
)


class ZfsBackend:
    """Serves zvols ``<pool>/<prefix>/volumes/<uuid>.<generation>``."""

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.pool = context.option("pool", "persist")
        self.root = names.volumes_root(self.pool, context.option("prefix", "vault"))
        self.locks = context.persist_dir / "zfs" / "locks"
        self.lzc: Any = None
        self.unavailable_reason = libzfs_core_missing()
        if not self.unavailable_reason and not Path("/dev/zfs").exists():  # before the costly import
            self.unavailable_reason = "the zfs kernel module is not loaded (/dev/zfs is missing)"
        if not self.unavailable_reason:
            self.lzc, self.unavailable_reason = load_libzfs_core()
        if self.lzc is not None and not self.unavailable_reason:
            self.unavailable_reason = self._check_pool()

    def lock_volume(self, volume: VolumeHandle | VolumeSpec | Sequence[VolumeHandle]) -> Any:
        """The toolkit's per-volume lock of every volume named (in one order, so
        two group calls cannot deadlock); removed once the zvol is gone."""
        volumes = sorted(volume, key=lambda v: v.key) if isinstance(volume, Sequence) else [volume]
        stack = contextlib.ExitStack()
        for one in volumes:
            dataset = self._dataset(one)
            lock = self.locks / f"{one.uuid}.{one.generation}.lock"
            gone = lambda d=dataset: self.lzc is None or not self.lzc.lzc_exists(d.encode())  # noqa: E731
            stack.enter_context(toolkit.volume_lock(lock, one.key, gone=gone))
        return stack

    def _check_pool(self) -> str:
        assert self.lzc is not None
        try:
            if not self.lzc.lzc_exists(self.pool.encode()):
                return f"ZFS pool {self.pool!r} does not exist (set EVESNAP_ZFS_POOL)"
        except Exception as exc:  # libzfs_core raises its own errors for a broken setup
            return f"libzfs_core cannot reach ZFS: {exc}"
        return ""

    # ================================================================ plumbing

    def _lzc(self) -> Any:
        if self.lzc is None or self.unavailable_reason:
            raise BackendUnavailable(NAME, self.unavailable_reason)
        return self.lzc

    def _exc(self) -> Any:
        self._lzc()
        return importlib.import_module("libzfs_core.exceptions")

    def _dataset(self, volume: VolumeHandle | VolumeSpec) -> str:
        return names.zvol(self.root, volume.uuid, volume.generation)

    def _handle(self, spec: VolumeSpec) -> VolumeHandle:
        return toolkit.handle_for(spec, NAME, self._dataset(spec), "zvol")

    def _exists(self, dataset: str) -> bool:
        return bool(self._lzc().lzc_exists(dataset.encode()))

    def _require(self, volume: VolumeHandle) -> str:
        dataset = self._dataset(volume)
        if not self._exists(dataset):
            raise VolumeNotFound(volume.key, f"zvol {dataset} does not exist")
        return dataset

    def _available(self) -> int:
        """Bytes a new zvol may still reserve under the volumes' root (or the pool)."""
        return datasets.number("available", self.root if self._exists(self.root) else self.pool)

    def _destroy_snapshots(self, snaps: list[bytes], where: str, snapshot_id: str = "") -> None:
        datasets.destroy_snaps(self._lzc(), self._exc(), snaps, where, snapshot_id, BUSY_RETRIES, BUSY_PAUSE)

    def _when_not_busy(self, action: Any, dataset: str) -> None:
        datasets.retry_busy(self._exc(), action, dataset, BUSY_RETRIES, BUSY_PAUSE)

    def _find(self, dataset: str, snapshot_id: str) -> str | None:
        return next((n for n, i, _, _ in datasets.snapshots(dataset) if (i or n) == snapshot_id), None)

    def _info(
        self, volume: VolumeHandle, name: str, ident: str, parent: str | None, created: int
    ) -> SnapshotInfo:
        return SnapshotInfo(
            snapshot_id=ident,
            name=name,
            volume=volume.uuid,
            generation=volume.generation,
            created=datetime.fromtimestamp(created, UTC),
            parent=parent,
        )

    def _ensure_root(self) -> None:
        lzc = self._lzc()
        parts = self.root.split("/")
        for depth in range(2, len(parts) + 1):
            name = "/".join(parts[:depth]).encode()
            if not lzc.lzc_exists(name):
                try:
                    lzc.lzc_create(name, ds_type="zfs", props={b"mountpoint": b"none"})
                except self._exc().FilesystemExists:
                    pass

    # ================================================================ description

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            plugin_api_version=PLUGIN_API_VERSION,
            capabilities=CAPABILITIES,
            formats=("zvol",),
            available=not self.unavailable_reason,
            unavailable_reason=self.unavailable_reason,
            description=f"ZFS zvols under {self.root} through libzfs_core",
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if volume.format == "zvol" and not volume.purgeable else None

    # ================================================================ volumes

    @hookimpl
    @serialised
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        return self._create(volume)

    def _create(self, volume: VolumeSpec) -> VolumeHandle:
        lzc = self._lzc()
        dataset = self._dataset(volume)
        size = max(volume.size_bytes, 1 << 20)
        size += -size % (16 << 10)  # a whole number of volblocks
        if self._exists(dataset):
            current = datasets.number("volsize", dataset)
            if current != size:
                raise AlreadyExists(f"volume {volume.key} exists with {current} bytes, not {size}")
            return self._handle(volume)
        self._ensure_root()
        toolkit.require_free(f"ZFS pool {self.pool}", size, self._available())
        try:
            lzc.lzc_create(
                dataset.encode(),
                ds_type="zvol",
                props={b"volsize": size, b"volblocksize": 16 << 10, b"snapdev": 1},
            )
        except self._exc().NoSpace as exc:
            raise NoSpace(f"ZFS pool {self.pool}", size, self._available()) from exc
        devices.wait_for_device(dataset)
        return self._handle(volume)

    @hookimpl
    @serialised
    def evesnap_populate_volume(
        self, volume: VolumeSpec, source: ContentSource, progress: Any
    ) -> VolumeHandle:
        """The content image inspected first (refused when it names another file),
        the pool's space checked by the create, then the bytes onto the zvol."""
        image = toolkit.inspect_content(source)
        spec = volume.model_copy(update={"size_bytes": max(volume.size_bytes, image.virtual_size)})
        if self._exists(self._dataset(volume)):
            return self._create(spec)  # idempotent: the same size, or AlreadyExists
        handle = self._create(spec)
        device = devices.wait_for_device(self._dataset(volume))
        try:
            toolkit.write_content(image, device, spec.size_bytes, progress, device=True)
        except BaseException:
            self._destroy(handle)
            raise
        return handle

    @hookimpl
    @serialised
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        """Destroy the zvol and its snapshots; a missing zvol is already destroyed."""
        self._destroy(volume)

    def _destroy(self, volume: VolumeHandle) -> None:
        lzc = self._lzc()
        dataset = self._dataset(volume)
        if not self._exists(dataset):
            return
        snaps = [n.encode() for n, _, _, _ in datasets.snapshots(dataset)]
        if snaps:
            self._destroy_snapshots(snaps, volume.key)
        self._when_not_busy(lambda: lzc.lzc_destroy(dataset.encode()), dataset)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        dataset = self._require(volume)
        virtual, used = datasets.number("volsize", dataset), datasets.number("used", dataset)
        return VolumeDetails(handle=volume, format="zvol", virtual_size=virtual, actual_size=used)

    # ================================================================ snapshots

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        return self.evesnap_snapshot_group([volume], snapshot_id)[0]

    @hookimpl
    def evesnap_snapshot_group(self, volumes: list[VolumeHandle], snapshot_id: str) -> list[SnapshotInfo]:
        """One lzc_snapshot call for all zvols: ZFS makes them all or none."""
        with self.lock_volume(volumes):
            return self._snapshot_group(volumes, snapshot_id)

    def _snapshot_group(self, volumes: list[VolumeHandle], snapshot_id: str) -> list[SnapshotInfo]:
        lzc = self._lzc()
        now = datetime.now(UTC)
        wanted: list[bytes] = []
        props: dict[bytes, bytes] = {names.ID_PROP.encode(): names.encode(snapshot_id).encode()}
        parents: dict[str, str | None] = {}
        for volume in volumes:
            dataset = self._require(volume)
            rows = datasets.snapshots(dataset)
            if any(i == snapshot_id for _, i, _, _ in rows):
                continue  # idempotent
            parents[dataset] = rows[-1][1] if rows else None
            wanted.append(names.snapshot_name(dataset, now, {n for n, _, _, _ in rows}).encode())
        if wanted:
            # one call, so one set of properties: the parent is per zvol, set right after
            try:
                lzc.lzc_snapshot(wanted, props=props)
            except self._exc().SnapshotFailure as exc:
                raise EvesnapError(
                    f"ZFS refused the group snapshot {snapshot_id!r}: {datasets.errors_of(exc)}"
                ) from exc
            crashpoint("zfs.snapshot.made")
            for snap in wanted:
                parent = parents[snap.decode().split("@")[0]]
                if parent is not None:
                    datasets.set_parent(snap.decode(), parent)
            crashpoint("zfs.snapshot.parents_set")
        infos = []
        for volume in volumes:
            dataset = self._dataset(volume)
            row = next((r for r in datasets.snapshots(dataset) if r[1] == snapshot_id), None)
            if row is None:
                raise EvesnapError(f"snapshot {snapshot_id!r} of {dataset} missing right after it was made")
            infos.append(self._info(volume, row[0], snapshot_id, row[2], row[3]))
        return infos

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        dataset = self._require(volume)
        return [self._info(volume, n, i or n, p, c) for n, i, p, c in datasets.snapshots(dataset)]

    def _newer(self, dataset: str, snapshot_id: str) -> tuple[str, list[tuple[str, str]]]:
        rows = datasets.snapshots(dataset)
        # a snapshot evesnap did not make (EVE's) has no evesnap:id: its full name is its id,
        # as evesnap_list_snapshots gives it
        index = next((k for k, r in enumerate(rows) if (r[1] or r[0]) == snapshot_id), None)
        if index is None:
            raise SnapshotNotFound(snapshot_id, dataset)
        return rows[index][0], [(n, i or n) for n, i, _, _ in rows[index + 1 :]]

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        _, newer = self._newer(self._require(volume), snapshot_id)
        blockers = tuple(i for _, i in newer)
        return RollbackCheck(
            possible=not blockers,
            blockers=blockers,
            reason="ZFS rolls back only to the newest snapshot" if blockers else "",
        )

    @hookimpl
    @serialised
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str, destroy_newer: bool) -> RollbackResult:
        lzc = self._lzc()
        dataset = self._require(volume)
        name, newer = self._newer(dataset, snapshot_id)
        if newer and not destroy_newer:
            raise RollbackBlocked(snapshot_id, [i for _, i in newer])
        if newer:
            self._destroy_snapshots([n.encode() for n, _ in newer], volume.key)
            crashpoint("zfs.rollback.newer_destroyed")
        self._when_not_busy(lambda: lzc.lzc_rollback_to(dataset.encode(), name.encode()), dataset)
        crashpoint("zfs.rollback.applied")
        devices.flush_buffers(dataset)
        return RollbackResult(
            snapshot_id=snapshot_id, destroyed=tuple(i for _, i in newer), live_generation=volume.generation
        )

    @hookimpl
    @serialised
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        """Destroy the snapshot; its children take its parent (the toolkit's
        lineage), so no evesnap:parent names a deleted snapshot."""
        dataset = self._dataset(volume)
        if not self._exists(dataset):
            return
        rows = datasets.snapshots(dataset)
        name = next((n for n, i, _, _ in rows if (i or n) == snapshot_id), None)
        if name is None:
            return
        self._destroy_snapshots([name.encode()], volume.key, snapshot_id)
        crashpoint("zfs.delete.destroyed")
        self._reparent(rows, snapshot_id)

    @staticmethod
    def _reparent(rows: list[datasets.Row], deleted: str) -> None:
        moved = toolkit.reparented({i: p for _, i, p, _ in rows if i is not None}, deleted)
        for snap, ident, _, _ in rows:
            if ident in moved:
                datasets.set_parent(snap, moved[ident])

    # ================================================================ clones and access

    @hookimpl
    @serialised
    def evesnap_clone_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, target: VolumeSpec, progress: Any
    ) -> VolumeHandle:
        lzc = self._lzc()
        dataset = self._require(volume)
        name = self._find(dataset, snapshot_id)
        if name is None:
            raise SnapshotNotFound(snapshot_id, volume.key)
        clone = self._dataset(target)
        if self._exists(clone):
            raise AlreadyExists(f"volume {target.key} exists already")
        lzc.lzc_clone(clone.encode(), name.encode(), props={b"snapdev": 1})
        devices.wait_for_device(clone)
        return self._handle(target)

    @hookimpl
    def evesnap_open_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, runtime_dir: str
    ) -> ReadOnlyExport:
        """The snapshot's own device (``snapdev=visible``): read-only by nature."""
        dataset = self._require(volume)
        name = self._find(dataset, snapshot_id)
        if name is None:
            raise SnapshotNotFound(snapshot_id, volume.key)
        path = devices.wait_for_device(name)
        return ReadOnlyExport(export_id=name, kind="path", path=path, format="raw")

    @hookimpl
    def evesnap_close_snapshot(self, volume: VolumeHandle, export: ReadOnlyExport) -> None:
        """Nothing to release: the snapshot device exists as long as the snapshot."""

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

import importlib
import json
import time
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
    SnapshotInUse,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
)
from evesnap_core.crashpoints import crashpoint
from evesnap_core.process import run
from evesnap_zfs import devices, names
from evesnap_zfs.libzfs import load_libzfs_core

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
        self.lzc, self.unavailable_reason = load_libzfs_core()
        if self.lzc is not None and not self.unavailable_reason:
            self.unavailable_reason = self._check_pool()

    def _check_pool(self) -> str:
        if not Path("/dev/zfs").exists():
            return "the zfs kernel module is not loaded (/dev/zfs is missing)"
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
        return VolumeHandle(
            uuid=spec.uuid,
            generation=spec.generation,
            backend=NAME,
            format="zvol",
            location=self._dataset(spec),
        )

    def _exists(self, dataset: str) -> bool:
        return bool(self._lzc().lzc_exists(dataset.encode()))

    def _require(self, volume: VolumeHandle) -> str:
        dataset = self._dataset(volume)
        if not self._exists(dataset):
            raise VolumeNotFound(volume.key, f"zvol {dataset} does not exist")
        return dataset

    def _snapshots(self, dataset: str) -> list[tuple[str, str | None, str | None, int]]:
        """(full name, id, parent, creation time) of the zvol's snapshots, oldest first."""
        out = run(
            [
                "zfs",
                "list",
                "-H",
                "-p",
                "-t",
                "snapshot",
                "-d",
                "1",
                "-s",
                "createtxg",
                "-o",
                f"name,creation,{names.ID_PROP},{names.PARENT_PROP}",
                dataset,
            ],
            timeout=60,
        )
        rows = []
        for line in out.stdout.decode().splitlines():
            name, created, ident, parent = line.split("\t")
            rows.append((name, names.decode(ident), names.decode(parent), int(created)))
        return rows

    def _find(self, dataset: str, snapshot_id: str) -> str | None:
        return next((n for n, i, _, _ in self._snapshots(dataset) if i == snapshot_id), None)

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
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        lzc = self._lzc()
        dataset = self._dataset(volume)
        size = max(volume.size_bytes, 1 << 20)
        size += -size % (16 << 10)  # a whole number of volblocks
        if self._exists(dataset):
            current = self._volsize(dataset)
            if current != size:
                raise AlreadyExists(f"volume {volume.key} exists with {current} bytes, not {size}")
            return self._handle(volume)
        self._ensure_root()
        try:
            lzc.lzc_create(
                dataset.encode(),
                ds_type="zvol",
                props={b"volsize": size, b"volblocksize": 16 << 10, b"snapdev": 1},
            )
        except self._exc().NoSpace as exc:
            raise NoSpace(self.pool, size, 0) from exc
        devices.wait_for_device(dataset)
        return self._handle(volume)

    def _volsize(self, dataset: str) -> int:
        out = run(["zfs", "get", "-Hp", "-o", "value", "volsize", dataset], timeout=60)
        return int(out.stdout.decode().strip())

    @hookimpl
    def evesnap_populate_volume(
        self, volume: VolumeSpec, source: ContentSource, progress: Any
    ) -> VolumeHandle:
        info = run(
            ["qemu-img", "info", "--output=json", "-f", source.format, str(source.path.resolve())],
            timeout=120,
        )
        virtual = int(json.loads(info.stdout)["virtual-size"])
        spec = volume.model_copy(update={"size_bytes": max(volume.size_bytes, virtual)})
        handle = self.evesnap_create_volume(spec)
        device = devices.wait_for_device(self._dataset(volume))
        try:
            run(
                [
                    "qemu-img",
                    "convert",
                    "-n",
                    "-f",
                    source.format,
                    "-O",
                    "raw",
                    str(source.path.resolve()),
                    str(device),
                ],
                timeout=3600,
            )
        except EvesnapError:
            self.evesnap_destroy_volume(handle)
            raise
        if progress is not None:
            progress(virtual, virtual)
        return handle

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        """Destroy the zvol and its snapshots; a missing zvol is already destroyed."""
        lzc = self._lzc()
        dataset = self._dataset(volume)
        if not self._exists(dataset):
            return
        snaps = [n.encode() for n, _, _, _ in self._snapshots(dataset)]
        if snaps:
            self._destroy_snaps(snaps, volume.key)
        self._retry_busy(lambda: lzc.lzc_destroy(dataset.encode()), dataset)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        dataset = self._require(volume)
        out = run(["zfs", "get", "-Hp", "-o", "property,value", "volsize,used", dataset], timeout=60)
        props = dict(line.split("\t", 1) for line in out.stdout.decode().splitlines())
        return VolumeDetails(
            handle=volume, format="zvol", virtual_size=int(props["volsize"]), actual_size=int(props["used"])
        )

    # ================================================================ snapshots

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        return self.evesnap_snapshot_group([volume], snapshot_id)[0]

    @hookimpl
    def evesnap_snapshot_group(self, volumes: list[VolumeHandle], snapshot_id: str) -> list[SnapshotInfo]:
        """One lzc_snapshot call for all zvols: ZFS makes them all or none."""
        lzc = self._lzc()
        now = datetime.now(UTC)
        wanted: list[bytes] = []
        props: dict[bytes, bytes] = {names.ID_PROP.encode(): names.encode(snapshot_id).encode()}
        parents: dict[str, str | None] = {}
        for volume in volumes:
            dataset = self._require(volume)
            rows = self._snapshots(dataset)
            if any(i == snapshot_id for _, i, _, _ in rows):
                continue  # idempotent
            parents[dataset] = rows[-1][1] if rows else None
            wanted.append(names.snapshot_name(dataset, now, {n for n, _, _, _ in rows}).encode())
        if wanted:
            # one call, so one set of properties: the parent is per zvol, set right after
            try:
                lzc.lzc_snapshot(wanted, props=props)
            except self._exc().SnapshotFailure as exc:
                raise EvesnapError(f"ZFS refused the group snapshot {snapshot_id!r}: {_errors(exc)}") from exc
            crashpoint("zfs.snapshot.made")
            for snap in wanted:
                parent = parents[snap.decode().split("@")[0]]
                if parent is not None:
                    run(
                        ["zfs", "set", f"{names.PARENT_PROP}={names.encode(parent)}", snap.decode()],
                        timeout=60,
                    )
            crashpoint("zfs.snapshot.parents_set")
        infos = []
        for volume in volumes:
            dataset = self._dataset(volume)
            row = next((r for r in self._snapshots(dataset) if r[1] == snapshot_id), None)
            if row is None:
                raise EvesnapError(f"snapshot {snapshot_id!r} of {dataset} missing right after it was made")
            infos.append(self._info(volume, row[0], snapshot_id, row[2], row[3]))
        return infos

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        dataset = self._require(volume)
        return [self._info(volume, n, i or n, p, c) for n, i, p, c in self._snapshots(dataset)]

    def _newer(self, dataset: str, snapshot_id: str) -> tuple[str, list[tuple[str, str]]]:
        rows = self._snapshots(dataset)
        index = next((k for k, r in enumerate(rows) if r[1] == snapshot_id), None)
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
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str, destroy_newer: bool) -> RollbackResult:
        lzc = self._lzc()
        dataset = self._require(volume)
        name, newer = self._newer(dataset, snapshot_id)
        if newer and not destroy_newer:
            raise RollbackBlocked(snapshot_id, [i for _, i in newer])
        if newer:
            self._destroy_snaps([n.encode() for n, _ in newer], volume.key)
            crashpoint("zfs.rollback.newer_destroyed")
        self._retry_busy(lambda: lzc.lzc_rollback_to(dataset.encode(), name.encode()), dataset)
        crashpoint("zfs.rollback.applied")
        devices.flush_buffers(dataset)
        return RollbackResult(
            snapshot_id=snapshot_id, destroyed=tuple(i for _, i in newer), live_generation=volume.generation
        )

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        dataset = self._dataset(volume)
        if not self._exists(dataset):
            return
        name = self._find(dataset, snapshot_id)
        if name is not None:
            self._destroy_snaps([name.encode()], volume.key, snapshot_id)
            crashpoint("zfs.delete.destroyed")

    def _destroy_snaps(self, snaps: list[bytes], where: str, snapshot_id: str = "") -> None:
        """Destroy, retrying a bounded number of times while ZFS says busy; a cloned
        snapshot is in use; every other failure is raised, never swallowed."""
        lzc, exc_mod = self._lzc(), self._exc()
        for attempt in range(BUSY_RETRIES + 1):
            try:
                lzc.lzc_destroy_snaps(snaps, defer=False)
                return
            except exc_mod.SnapshotDestructionFailure as exc:
                errors = list(getattr(exc, "errors", []))
                if any(isinstance(e, exc_mod.SnapshotIsCloned) for e in errors):
                    clones = self._clones_of(snaps)
                    raise SnapshotInUse(snapshot_id or snaps[0].decode(), clones or ["a clone"]) from exc
                busy = any(getattr(e, "errno", None) == 16 for e in errors)  # EBUSY
                if not busy or attempt == BUSY_RETRIES:
                    raise EvesnapError(f"ZFS could not destroy snapshots of {where}: {_errors(exc)}") from exc
            time.sleep(BUSY_PAUSE)

    def _retry_busy(self, action: Any, dataset: str) -> None:
        exc_mod = self._exc()
        for attempt in range(BUSY_RETRIES + 1):
            try:
                action()
                return
            except exc_mod.DatasetBusy as exc:
                if attempt == BUSY_RETRIES:
                    raise EvesnapError(f"{dataset} stayed busy after {BUSY_RETRIES} retries: {exc}") from exc
            time.sleep(BUSY_PAUSE)

    def _clones_of(self, snaps: list[bytes]) -> list[str]:
        found = []
        for snap in snaps:
            out = run(["zfs", "get", "-H", "-o", "value", "clones", snap.decode()], timeout=60, check=False)
            found += [c for c in out.stdout.decode().strip().split(",") if c and c != "-"]
        return found

    # ================================================================ clones and access

    @hookimpl
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


def _errors(exc: Exception) -> str:
    errors = getattr(exc, "errors", None) or [exc]
    return "; ".join(f"{type(e).__name__}: {e}" for e in errors)

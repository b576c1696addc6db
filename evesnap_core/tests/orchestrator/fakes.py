"""In-memory backends for unit tests of the orchestrator's logic (no storage here;
the end-to-end tests use real qcow2 volumes and QEMU)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from evesnap_core import (
    BackendContext,
    BackendInfo,
    Capability,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
)


class Disks:
    """Shared 'disk' contents: volume key -> bytes; snapshots (key, id) -> bytes."""

    def __init__(self) -> None:
        self.volumes: dict[str, bytes] = {}
        self.snapshots: dict[tuple[str, str], bytes] = {}
        self.retained: dict[tuple[str, str], bytes] = {}
        self.fail_snapshot: set[str] = set()
        self.fail_delete: set[str] = set()


DISKS = Disks()


class FakeCow:
    """Copy-on-write snapshots of data volumes; live snapshots when `live`."""

    name = "fakecow"
    live = False

    def __init__(self, context: BackendContext) -> None:
        self.disks = DISKS

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        caps = {
            Capability.CREATE_VOLUME,
            Capability.POPULATE_VOLUME,
            Capability.SNAPSHOT,
            Capability.ROLLBACK_ANY,
        }
        if self.live:
            caps |= {Capability.LIVE_SNAPSHOT, Capability.LIVE_DELETE}
        return BackendInfo(
            name=self.name, plugin_api_version=1, capabilities=frozenset(caps), formats=("qcow2",)
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if not volume.purgeable else None

    def _handle(self, volume: VolumeSpec) -> VolumeHandle:
        return VolumeHandle(
            uuid=volume.uuid,
            generation=volume.generation,
            backend=self.name,
            format=volume.format,
            location=f"mem:{volume.key}",
        )

    @hookimpl
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        self.disks.volumes.setdefault(volume.key, b"\0" * 16)
        return self._handle(volume)

    @hookimpl
    def evesnap_populate_volume(self, volume: VolumeSpec, source: Any) -> VolumeHandle:
        self.disks.volumes[volume.key] = source.path.read_bytes()
        return self._handle(volume)

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        self.disks.volumes.pop(volume.key, None)
        for k in [k for k in self.disks.snapshots if k[0] == volume.key]:
            del self.disks.snapshots[k]

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        size = len(self.disks.volumes.get(volume.key, b""))
        return VolumeDetails(handle=volume, format=volume.format, virtual_size=size, actual_size=size)

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        if volume.key in self.disks.fail_snapshot:
            raise VolumeNotFound(volume.key, "injected failure")
        if volume.key not in self.disks.volumes:
            raise VolumeNotFound(volume.key)
        self.disks.snapshots[(volume.key, snapshot_id)] = self.disks.volumes[volume.key]
        return SnapshotInfo(
            snapshot_id=snapshot_id,
            name=f"{volume.key}@{snapshot_id}",
            volume=volume.uuid,
            generation=volume.generation,
            created=datetime.now(UTC),
        )

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        return []

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        if volume.key in self.disks.fail_delete:
            raise VolumeNotFound(volume.key, "injected delete failure")
        self.disks.snapshots.pop((volume.key, snapshot_id), None)

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        return RollbackCheck(possible=True)

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        try:
            self.disks.volumes[volume.key] = self.disks.snapshots[(volume.key, snapshot_id)]
        except KeyError:
            raise SnapshotNotFound(snapshot_id, volume.key) from None
        return RollbackResult(snapshot_id=snapshot_id)


class FakeLiveCow(FakeCow):
    name = "fakelive"
    live = True


class FakeWhole(FakeCow):
    """Purgeable volumes: a retiring snapshot keeps the old generation whole."""

    name = "fakewhole"

    @hookimpl(tryfirst=True)
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if volume.purgeable else None

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str, retiring: bool) -> SnapshotInfo:
        if volume.key in self.disks.fail_snapshot:
            raise VolumeNotFound(volume.key, "injected failure")
        data = self.disks.volumes.pop(volume.key) if retiring else self.disks.volumes[volume.key]
        self.disks.retained[(volume.key, snapshot_id)] = data
        return SnapshotInfo(
            snapshot_id=snapshot_id,
            name=f"kept:{volume.key}",
            volume=volume.uuid,
            generation=volume.generation,
            created=datetime.now(UTC),
        )

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        self.disks.retained.pop((volume.key, snapshot_id), None)

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        self.disks.volumes.pop(volume.key, None)

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        try:
            self.disks.volumes[volume.key] = self.disks.retained[(volume.key, snapshot_id)]
        except KeyError:
            raise SnapshotNotFound(snapshot_id, volume.key) from None
        return RollbackResult(snapshot_id=snapshot_id, live_generation=volume.generation)

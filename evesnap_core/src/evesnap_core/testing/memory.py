"""An in-memory backend and runtime, for measuring and testing the orchestrator
alone (no storage, no VMs). Never a substitute for a real backend's tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from evesnap_core import (
    BackendContext,
    BackendInfo,
    Capability,
    ContentSource,
    LiveAttachment,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeSpec,
    hookimpl,
)
from evesnap_core.runtime_hookspecs import AppRunState, AppSpec, runtime_hookimpl


class MemoryBackend:
    """Volumes and snapshots as dictionary entries; claims every volume."""

    name = "memory"

    def __init__(self, context: BackendContext | None = None) -> None:
        self.volumes: dict[str, bytes] = {}
        self.snapshots: dict[tuple[str, str], SnapshotInfo] = {}

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        caps = {
            Capability.CREATE_VOLUME,
            Capability.POPULATE_VOLUME,
            Capability.SNAPSHOT,
            Capability.LIVE_SNAPSHOT,
            Capability.LIVE_DELETE,
            Capability.ROLLBACK_ANY,
        }
        return BackendInfo(
            name=self.name, plugin_api_version=1, capabilities=frozenset(caps), formats=("qcow2", "raw")
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True

    def _handle(self, volume: VolumeSpec) -> VolumeHandle:
        return VolumeHandle(
            uuid=volume.uuid,
            generation=volume.generation,
            backend=self.name,
            format=volume.format,
            location=f"memory:{volume.key}",
        )

    @hookimpl
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        self.volumes.setdefault(volume.key, b"")
        return self._handle(volume)

    @hookimpl
    def evesnap_populate_volume(self, volume: VolumeSpec, source: ContentSource) -> VolumeHandle:
        self.volumes[volume.key] = str(source.path).encode()
        return self._handle(volume)

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        self.volumes.pop(volume.key, None)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        return VolumeDetails(handle=volume, format=volume.format, virtual_size=0, actual_size=0)

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            name=snapshot_id,
            volume=volume.uuid,
            generation=volume.generation,
            created=datetime.now(UTC),
        )
        self.snapshots.setdefault((volume.key, snapshot_id), info)
        return self.snapshots[(volume.key, snapshot_id)]

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        return [i for (k, _), i in self.snapshots.items() if k == volume.key]

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        self.snapshots.pop((volume.key, snapshot_id), None)

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        return RollbackCheck(possible=True)

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        if (volume.key, snapshot_id) not in self.snapshots:
            raise SnapshotNotFound(snapshot_id, volume.key)
        return RollbackResult(snapshot_id=snapshot_id, live_generation=volume.generation)


class InstantRuntime:
    """Apps start and stop at once; counts starts and stops."""

    def __init__(self, persist_dir: Path | None = None) -> None:
        self.running: dict[UUID, AppSpec] = {}
        self.starts = 0
        self.stops = 0

    @runtime_hookimpl
    def evesnap_runtime_name(self) -> str:
        return "instant"

    @runtime_hookimpl
    def evesnap_runtime_start(self, app: AppSpec) -> None:
        self.starts += 1
        self.running[app.uuid] = app

    @runtime_hookimpl
    def evesnap_runtime_stop(self, app_id: UUID, timeout: float) -> bool:
        if self.running.pop(app_id, None) is not None:
            self.stops += 1
        return True

    @runtime_hookimpl
    def evesnap_runtime_state(self, app_id: UUID) -> AppRunState:
        return "running" if app_id in self.running else "stopped"

    @runtime_hookimpl
    def evesnap_runtime_attachments(self, app_id: UUID) -> Mapping[str, LiveAttachment]:
        app = self.running.get(app_id)
        if app is None:
            return {}
        return {
            h.key: LiveAttachment(qmp_socket=Path("/nonexistent"), node_name=f"n{i}")
            for i, h in enumerate(app.volumes)
        }

    @runtime_hookimpl
    def evesnap_runtime_running_apps(self) -> Sequence[UUID]:
        return list(self.running)

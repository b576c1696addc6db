"""The Backend proxy's own logic: capability enforcement, bug wrapping, group
fallback. A fake in-memory backend is enough here: no storage is involved."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evesnap_core import (
    BackendContext,
    BackendInfo,
    Capability,
    LiveAttachment,
    NoBackendFor,
    NotSupported,
    SnapshotInfo,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeLocked,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
)
from evesnap_core.discovery import load_backends
from evesnap_core.errors import BackendBug


class MemoryBackend:
    """Snapshots as dict entries; `fail_on` volumes make snapshot fail."""

    capabilities = frozenset({Capability.SNAPSHOT, Capability.CREATE_VOLUME, Capability.ROLLBACK_ANY})

    def __init__(self, context: BackendContext) -> None:
        self.snaps: dict[str, dict[str, SnapshotInfo]] = {}
        self.fail_on: set[str] = set()
        self.bug = False

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name="memory", plugin_api_version=1, capabilities=self.capabilities, formats=("mem",)
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if volume.format == "mem" else None

    @hookimpl
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        self.snaps.setdefault(volume.key, {})
        return VolumeHandle(
            uuid=volume.uuid,
            generation=volume.generation,
            backend="memory",
            format="mem",
            location=volume.key,
        )

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        self.snaps.pop(volume.key, None)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        return VolumeDetails(handle=volume, format="mem", virtual_size=0, actual_size=0)

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        if self.bug:
            raise KeyError("oops")
        if volume.key in self.fail_on or volume.key not in self.snaps:
            raise VolumeNotFound(volume.key)
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            name=snapshot_id,
            volume=volume.uuid,
            generation=volume.generation,
            created=datetime.now(UTC),
        )
        self.snaps[volume.key][snapshot_id] = info
        return info

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        return list(self.snaps.get(volume.key, {}).values())

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        self.snaps.get(volume.key, {}).pop(snapshot_id, None)

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> Any:
        from evesnap_core import RollbackCheck

        return RollbackCheck(possible=True)

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> Any:
        from evesnap_core import RollbackResult

        if snapshot_id not in self.snaps.get(volume.key, {}):
            raise SnapshotNotFound(snapshot_id, volume.key)
        return RollbackResult(snapshot_id=snapshot_id)


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[Any, MemoryBackend]:
    made: list[MemoryBackend] = []

    def factory(context: BackendContext) -> MemoryBackend:
        made.append(MemoryBackend(context))
        return made[-1]

    registry = load_backends(tmp_path, extra=[("memory", factory)], environ={})
    return registry.get("memory"), made[0]


def spec() -> VolumeSpec:
    return VolumeSpec(uuid=uuid.uuid4(), format="mem", size_bytes=1)


def test_undeclared_capability_never_reaches_the_backend(loaded: Any) -> None:
    backend, _ = loaded
    volume = backend.create_volume(spec())
    with pytest.raises(NotSupported, match="clone"):
        backend.clone(volume, "s", spec())
    with pytest.raises(NotSupported, match="read_only"):
        backend.open_snapshot(volume, "s", "/tmp")


def test_attached_volume_needs_live_capabilities(loaded: Any) -> None:
    backend, _ = loaded
    volume = backend.create_volume(spec())
    live = volume.attached(LiveAttachment(qmp_socket=Path("/nonexistent"), node_name="n"))
    with pytest.raises(NotSupported, match="live_snapshot"):
        backend.snapshot(live, "s")
    with pytest.raises(NotSupported, match="live_delete"):
        backend.delete_snapshot(live, "s")
    with pytest.raises(VolumeLocked):
        backend.rollback(live, "s")
    check = backend.rollback_check(live, "s")
    assert check.needs_stop and not check.possible


def test_untyped_exception_becomes_a_backend_bug(loaded: Any) -> None:
    backend, memory = loaded
    volume = backend.create_volume(spec())
    memory.bug = True
    with pytest.raises(BackendBug, match=r"'memory' failed in evesnap_snapshot_volume: KeyError"):
        backend.snapshot(volume, "s")


def test_group_fallback_undoes_a_partial_group(loaded: Any) -> None:
    backend, memory = loaded
    a, b, c = (backend.create_volume(spec()) for _ in range(3))
    memory.fail_on.add(c.key)
    with pytest.raises(VolumeNotFound):
        backend.snapshot_group([a, b, c], "g")
    assert backend.list_snapshots(a) == [] and backend.list_snapshots(b) == []
    infos = backend.snapshot_group([a, b], "g")
    assert [i.volume for i in infos] == [a.uuid, b.uuid]


def test_claim_picks_the_backend_or_says_none_claims(tmp_path: Path) -> None:
    registry = load_backends(tmp_path, extra=[("memory", MemoryBackend)], environ={})
    assert registry.claim(spec()).name == "memory"
    with pytest.raises(NoBackendFor, match="no bundled backend makes blank nosuchformat volumes"):
        registry.claim(VolumeSpec(uuid=uuid.uuid4(), format="nosuchformat"))
    # the message names the distribution (and the extra) that would serve the volume
    registry = load_backends(tmp_path, environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,zfs,purgeable,reflink"})
    with pytest.raises(NoBackendFor, match=r"evesnap-purgeable: pip install 'evesnap-core\[purgeable\]'"):
        registry.claim(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", purgeable=True))
    with pytest.raises(NoBackendFor, match=r"evesnap-zfs: pip install 'evesnap-core\[zfs\]'"):
        registry.claim(VolumeSpec(uuid=uuid.uuid4(), format="zvol"))


def test_block_list_applies_to_builtin_backends_too(tmp_path: Path) -> None:
    registry = load_backends(
        tmp_path, extra=[("memory", MemoryBackend)], environ={"EVESNAP_BLOCK_PLUGINS": "memory"}
    )
    assert "memory" not in registry.backends
    assert registry.records["memory"].status == "blocked"

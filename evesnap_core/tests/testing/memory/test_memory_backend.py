"""The in-memory backend's own parts: failure injection, and proof that the
suite's cases really look at it (a one-bug copy fails them, as a real backend's
would): the leftover cases see what the disk keeps, the byte cases its bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from evesnap_core import InUse, RollbackResult, VolumeHandle, VolumeNotFound, VolumeSpec, hookimpl
from evesnap_core.testing.conformance import integrity
from evesnap_core.testing.conformance.memory import MemoryHarness
from evesnap_core.testing.memory import MemoryBackend, MemoryConfig
from evesnap_core.testing.memory_disk import MemoryDisk


class KeepsVolumeRecords(MemoryBackend):
    """Destroy removes the volume and its snapshots, but leaves its records
    (format, size, head) behind: what a leaked metadata file is on disk."""

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        self.disk.volumes.pop(volume.key, None)
        for sid in self.disk.snapshot_ids(volume.key):
            self._drop(volume.key, sid)


class RollbackKeepsTheTail(MemoryBackend):
    """Rollback restores only the first 4 MiB (the bug class of a chunked copy)."""

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str, destroy_newer: bool) -> RollbackResult:
        current = self.disk.volumes[volume.key]
        result = super().evesnap_rollback(volume, snapshot_id, destroy_newer)
        restored = self.disk.volumes[volume.key]
        self.disk.volumes[volume.key] = restored[: 4 << 20] + current[4 << 20 :]
        return result


def harness_of(backend: type[MemoryBackend], tmp_path: Path) -> MemoryHarness:
    class Broken(MemoryHarness):
        backend_class = backend

    return Broken(tmp_path)


def test_a_leak_in_the_disk_fails_the_leftover_case(tmp_path: Path) -> None:
    harness = harness_of(KeepsVolumeRecords, tmp_path)
    case = integrity.TestLeftovers().test_destroy_with_snapshots_does_what_the_hookspec_says
    with pytest.raises(AssertionError, match=r"expected no files left.*volume-record"):
        case(harness, harness.load())
    honest = MemoryHarness(tmp_path / "honest")
    case(honest, honest.load())


def test_wrong_bytes_fail_the_whole_volume_case(tmp_path: Path) -> None:
    harness = harness_of(RollbackKeepsTheTail, tmp_path)
    case = integrity.TestWholeVolume().test_every_snapshot_holds_its_whole_volume
    volume = harness.new_volume(harness.load())
    with pytest.raises(AssertionError, match="expected the whole volume"):
        case(harness, harness.load(), volume)


def test_failures_are_injected_per_operation_and_volume_and_healed() -> None:
    disk = MemoryDisk()
    backend = MemoryBackend(config=MemoryConfig(), disk=disk)
    spec = VolumeSpec(uuid="11111111-1111-4111-8111-111111111111", size_bytes=16)
    other = spec.model_copy(update={"generation": 1})
    one, two = backend.evesnap_create_volume(spec), backend.evesnap_create_volume(other)
    disk.fail("snapshot", one.key)
    with pytest.raises(VolumeNotFound, match="injected snapshot failure"):
        backend.evesnap_snapshot_volume(one, "s", retiring=False)
    assert backend.evesnap_snapshot_volume(two, "s", retiring=False).snapshot_id == "s"
    disk.fail("delete_snapshot", error=lambda key: InUse(f"{key} is busy"))  # every volume
    with pytest.raises(InUse, match="busy"):
        backend.evesnap_delete_snapshot(two, "s")
    assert (two.key, "s") in disk.snapshots, "a failed operation changed nothing"
    disk.heal()
    backend.evesnap_snapshot_volume(one, "s", retiring=False)
    backend.evesnap_delete_snapshot(two, "s")
    assert list(disk.snapshots) == [(one.key, "s")]
    with pytest.raises(ValueError, match="unknown operation"):
        disk.fail("snapshto")


def test_a_retiring_generation_is_kept_whole_by_a_full_copy_backend() -> None:
    disk = MemoryDisk()
    backend = MemoryBackend(config=MemoryConfig(retain_after_destroy=True), disk=disk)
    volume = backend.evesnap_create_volume(
        VolumeSpec(uuid="11111111-1111-4111-8111-111111111111", size_bytes=4)
    )
    disk.volumes[volume.key] = b"old!"
    backend.evesnap_snapshot_volume(volume, "s", retiring=True)
    assert volume.key not in disk.volumes and disk.snapshots[(volume.key, "s")] == b"old!"
    assert backend.evesnap_backend_info().snapshot_space == "full_copy"
    backend.evesnap_rollback(volume, "s", destroy_newer=False)  # gives the generation back
    assert disk.volumes[volume.key] == b"old!"

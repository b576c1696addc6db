"""What only ZFS does, on a real pool (inside the ZFS VM: contrib/zfsvm/zfsvm):
one transaction group for a group snapshot, rollback only to the newest unless
told to destroy the newer ones (and then they are named), deletion retried while
a snapshot is busy, a cloned snapshot in use, and the page cache flushed after
a rollback. The generic cases are in the conformance suite (test_conformance.py)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core import EvesnapError, FormatError, RollbackBlocked, SnapshotInUse
from evesnap_core.handler_types import VolumeHandle
from evesnap_core.testing.conformance import Backend
from evesnap_core.testing.content_images import REFERENCE_KINDS, referencing_image
from evesnap_zfs import backend as zfs_backend
from evesnap_zfs.harness import ZfsHarness

MIB = 1 << 20


@pytest.fixture
def harness(tmp_path: Path) -> ZfsHarness:
    return ZfsHarness(tmp_path)


@pytest.fixture
def zfs(harness: ZfsHarness) -> Iterator[Backend]:
    backend = harness.load()
    yield backend


def zfs_get(prop: str, name: str) -> str:
    out = subprocess.run(
        ["zfs", "get", "-H", "-p", "-o", "value", prop, name],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def snapshot_name(backend: Backend, volume: VolumeHandle, snapshot_id: str) -> str:
    [info] = [i for i in backend.list_snapshots(volume) if i.snapshot_id == snapshot_id]
    return info.name if "@" in info.name else f"{volume.location}@{info.name}"


def test_a_group_snapshot_of_two_zvols_is_one_transaction(harness: ZfsHarness, zfs: Backend) -> None:
    a, b = harness.new_volume(zfs), harness.new_volume(zfs)
    harness.write(a, 0, b"A" * 4096)
    harness.write(b, 0, b"B" * 4096)
    infos = zfs.snapshot_group([a, b], "both")
    assert [i.snapshot_id for i in infos] == ["both", "both"]
    txgs = {zfs_get("createtxg", snapshot_name(zfs, v, "both")) for v in (a, b)}
    assert len(txgs) == 1, f"two transaction groups {txgs}: not atomic"


def test_rollback_to_an_older_snapshot_is_refused_naming_the_newer(harness: ZfsHarness, zfs: Backend) -> None:
    volume = harness.new_volume(zfs)
    for i, sid in enumerate(["s1", "s2", "s3"]):
        harness.write(volume, 0, bytes([i + 1]) * MIB)
        zfs.snapshot(volume, sid)
    harness.write(volume, 0, b"\xff" * MIB)
    check = zfs.rollback_check(volume, "s1")
    assert not check.possible and check.blockers == ("s2", "s3")
    with pytest.raises(RollbackBlocked) as info:
        zfs.rollback(volume, "s1")
    assert "s2" in str(info.value) and "s3" in str(info.value)
    assert harness.read(volume, 0, MIB) == b"\xff" * MIB  # nothing happened
    assert [i.snapshot_id for i in zfs.list_snapshots(volume)] == ["s1", "s2", "s3"]

    result = zfs.rollback(volume, "s1", destroy_newer=True)
    assert result.destroyed == ("s2", "s3")  # reported, never silent
    assert [i.snapshot_id for i in zfs.list_snapshots(volume)] == ["s1"]
    assert harness.read(volume, 0, MIB) == b"\x01" * MIB  # O_DIRECT: the disk's bytes


def test_a_buffered_read_after_rollback_sees_the_restored_bytes(harness: ZfsHarness, zfs: Backend) -> None:
    volume = harness.new_volume(zfs)
    harness.write(volume, 0, b"old!" * 1024)
    zfs.snapshot(volume, "s1")
    harness.write(volume, 0, b"new!" * 1024)
    with open(f"/dev/zvol/{volume.location}", "rb") as dev:
        assert dev.read(4096) == b"new!" * 1024  # now in the page cache
    zfs.rollback(volume, "s1")
    with open(f"/dev/zvol/{volume.location}", "rb") as dev:
        assert dev.read(4096) == b"old!" * 1024  # flushed: not the cached page


def test_deleting_a_cloned_snapshot_is_in_use(harness: ZfsHarness, zfs: Backend) -> None:
    volume = harness.new_volume(zfs)
    zfs.snapshot(volume, "s1")
    clone = zfs.clone(volume, "s1", harness.volume_spec())
    with pytest.raises(SnapshotInUse) as info:
        zfs.delete_snapshot(volume, "s1")
    assert clone.location in str(info.value)
    zfs.destroy_volume(clone)
    zfs.delete_snapshot(volume, "s1")
    assert zfs.list_snapshots(volume) == []


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zfs_backend, "BUSY_PAUSE", 0.5)


def test_delete_retries_while_busy_then_succeeds(
    harness: ZfsHarness, zfs: Backend, quick_retries: None
) -> None:
    volume = harness.new_volume(zfs)
    zfs.snapshot(volume, "s1")
    name = snapshot_name(zfs, volume, "s1")
    subprocess.run(["zfs", "hold", "evesnap-test", name], check=True, timeout=60)  # destroy: EBUSY
    release = threading.Timer(
        0.8, subprocess.run, (["zfs", "release", "evesnap-test", name],), {"check": True}
    )
    release.start()
    start = time.monotonic()
    zfs.delete_snapshot(volume, "s1")
    release.join()
    assert time.monotonic() - start >= 0.8  # it waited for the hold to go, then deleted
    assert zfs.list_snapshots(volume) == []


def test_delete_of_a_snapshot_that_stays_busy_is_reported(
    harness: ZfsHarness, zfs: Backend, quick_retries: None
) -> None:
    volume = harness.new_volume(zfs)
    zfs.snapshot(volume, "s1")
    name = snapshot_name(zfs, volume, "s1")
    subprocess.run(["zfs", "hold", "evesnap-test", name], check=True, timeout=60)
    try:
        with pytest.raises(EvesnapError, match="could not destroy"):
            zfs.delete_snapshot(volume, "s1")
        assert [i.snapshot_id for i in zfs.list_snapshots(volume)] == ["s1"]
    finally:
        subprocess.run(["zfs", "release", "evesnap-test", name], check=True, timeout=60)


@pytest.mark.parametrize("kind", REFERENCE_KINDS)
def test_content_naming_another_file_is_refused(harness: ZfsHarness, zfs: Backend, kind: str) -> None:
    """evesnap-zfs had no check: a qcow2 content image with an external data file
    (or a backing file) put the named host file's bytes on the zvol."""
    source, secret = referencing_image(harness.workdir / "hostile", kind)
    spec = harness.volume_spec()
    with pytest.raises(FormatError, match="refers to another file") as refused:
        zfs.populate_volume(spec, source)
    assert str(secret) in str(refused.value)
    assert subprocess.run(
        ["zfs", "list", f"{zfs_root(harness)}/{spec.uuid}.0"], capture_output=True
    ).returncode


def zfs_root(harness: ZfsHarness) -> str:
    env = harness.environ()
    return f"{env['EVESNAP_ZFS_POOL']}/{env['EVESNAP_ZFS_PREFIX']}/volumes"


def test_deleting_a_middle_snapshot_reparents_its_child(harness: ZfsHarness, zfs: Backend) -> None:
    """evesnap-zfs's delete never rewrote the children's evesnap:parent, so the
    listing named a deleted snapshot as a parent."""
    volume = harness.new_volume(zfs)
    try:
        for n in (1, 2, 3):
            harness.write(volume, 0, bytes([n]) * MIB)
            zfs.snapshot(volume, f"s{n}")
        zfs.delete_snapshot(volume, "s2")
        parents = {i.snapshot_id: i.parent for i in zfs.list_snapshots(volume)}
        assert parents == {"s1": None, "s3": "s1"}, (
            f"expected s3's parent to be s1 after deleting s2: {parents}"
        )
        zfs.delete_snapshot(volume, "s1")
        parents = {i.snapshot_id: i.parent for i in zfs.list_snapshots(volume)}
        assert parents == {"s3": None}, f"expected s3 to have no parent after deleting s1: {parents}"
    finally:
        zfs.destroy_volume(volume)

"""What a whole-volume backend must prove on real filesystems (loop-mounted
ext4, XFS, btrfs): a purge snapshot is O(1) whatever the size, reflink copies
share extents, a full copy that cannot fit is refused before a byte is
written, rollback gives back the exact bytes (twice), the snapshot owns its
generation until deleted, and with two generations nothing is picked by chance.

Bytes are written, read and hashed with plain file I/O, never through the
backend; space is read with statvfs.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    ContentSource,
    FormatError,
    NoSpace,
    SnapshotNotFound,
    VolumeHandle,
    VolumeSpec,
)
from evesnap_core.testing.conformance import Backend, load_backends
from evesnap_core.testing.loopfs import Kind
from evesnap_core.toolkit import run
from evesnap_purgeable.backend import PurgeableBackend

MIB = 1 << 20
GIB = 1 << 30
MakeFilesystem = Callable[[Kind, int], Path]


def backend_in(persist: Path) -> Backend:
    """A new backend object, loaded through its entry point as the agent does."""
    return load_backends(persist, environ={}).get("purgeable")


def spec(size: int, generation: int = 0, volume: uuid.UUID | None = None) -> VolumeSpec:
    return VolumeSpec(
        uuid=volume or uuid.uuid4(),
        generation=generation,
        format="raw",
        size_bytes=size,
        purgeable=True,
        backend="purgeable",
    )


def free(path: Path) -> int:
    os.sync()
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def free_once_reclaimed(path: Path, at_least: int) -> int:
    """Free space once the filesystem has reclaimed deleted files (XFS frees
    unlinked inodes in the background), or what it is after 10 s."""
    deadline = time.monotonic() + 10
    while (space := free(path)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return space


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def write(path: Path | str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path | str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def store_of(persist: Path) -> Path:
    return persist / "vault" / "snapshots" / "purgeable"


# ================================================================ a purge: O(1)


@pytest.mark.parametrize(
    ("kind", "fill"),
    [
        ("ext4", "allocated"),
        ("xfs", "allocated"),
        pytest.param("ext4", "written", marks=pytest.mark.slow),
    ],
)
def test_a_purge_snapshot_keeps_the_file_whatever_its_size(
    loop_filesystems: MakeFilesystem, kind: Kind, fill: str
) -> None:
    mount = loop_filesystems(kind, 20 * GIB)
    backend = backend_in(mount)
    timings = {}
    for size in (1 * GIB, 16 * GIB):
        volume = backend.create_volume(spec(size))
        live = Path(volume.location)
        if fill == "allocated":  # every block allocated on disk
            run(["fallocate", "-l", str(size), str(live)], timeout=60)
        else:  # every byte written
            with open(live, "r+b") as f:
                for _ in range(size // (16 * MIB)):
                    f.write(b"\xa5" * (16 * MIB))
                os.fsync(f.fileno())
        write(live, size - MIB, b"\xee" * MIB)
        inode, before = live.stat().st_ino, free(mount)
        start = time.perf_counter()
        info = backend.snapshot(volume, "at-purge", retiring=True)
        timings[size] = time.perf_counter() - start
        kept = Path(info.name)
        assert kept.stat().st_ino == inode, "the generation was copied instead of kept"
        assert abs(free(mount) - before) < 4 * MIB, "bytes were copied"
        assert not live.exists() and info.meta["mode"] == "kept"
        assert info.size_bytes is not None and info.size_bytes >= size  # it holds the whole volume
        assert read(kept, size - MIB, MIB) == b"\xee" * MIB
        backend.delete_snapshot(volume, "at-purge")
        freed = free_once_reclaimed(mount, before + size - 4 * MIB) - before
        assert freed >= size - 4 * MIB, "deleting the snapshot did not free it"
    print(f"\n{kind} ({fill}): retiring snapshot 1 GiB {timings[GIB] * 1e3:.2f} ms,")
    print(f"16 GiB {timings[16 * GIB] * 1e3:.2f} ms (benchmarks/purgeable_snapshot.py compares)")


# ================================================================ an immediate snapshot: a copy


def test_an_immediate_snapshot_on_ext4_is_a_sparse_full_copy_with_progress(
    loop_filesystems: MakeFilesystem,
) -> None:
    mount = loop_filesystems("ext4", 256 * MIB)
    backend = backend_in(mount)
    volume = backend.create_volume(spec(64 * MIB))
    live = Path(volume.location)
    write(live, 0, os.urandom(8 * MIB))
    write(live, 40 * MIB, os.urandom(4 * MIB))
    digest, before = sha256(live), free(mount)
    calls: list[tuple[int, int]] = []
    info = backend.snapshot(volume, "now", lambda done, total: calls.append((done, total)))
    copy = Path(info.name)
    assert info.meta["mode"] == "copy"
    assert sha256(copy) == digest == sha256(live)
    assert copy.stat().st_ino != live.stat().st_ino
    assert copy.stat().st_size == 64 * MIB
    assert 12 * MIB <= before - free(mount) < 13 * MIB, "holes were filled or data skipped"
    assert info.size_bytes is not None and 12 * MIB <= info.size_bytes < 13 * MIB
    assert calls and calls[-1][0] == calls[-1][1] >= 12 * MIB
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize("kind", ["xfs", "btrfs"])
def test_a_reflink_copy_shares_every_extent(loop_filesystems: MakeFilesystem, kind: Kind) -> None:
    mount = loop_filesystems(kind, 1 * GIB)
    backend = backend_in(mount)
    volume = backend.create_volume(spec(256 * MIB))
    live = Path(volume.location)
    write(live, 0, os.urandom(MIB) * 200)
    digest, before = sha256(live), free(mount)
    info = backend.snapshot(volume, "now")
    copy = Path(info.name)
    assert info.meta["mode"] == "reflink"
    used = before - free(mount)
    assert used < 8 * MIB, f"{used / MIB:.0f} MiB used by a reflink copy of 200 MiB"
    assert "shared" in run(["filefrag", "-v", str(copy)], timeout=30).stdout.decode()
    write(live, 0, b"\x00" * 16 * MIB)  # copy on write: the snapshot keeps its bytes
    assert sha256(copy) == digest != sha256(live)


# ================================================================ no space: refused first


def test_no_space_is_refused_before_a_byte_is_copied(loop_filesystems: MakeFilesystem) -> None:
    mount = loop_filesystems("ext4", 64 * MIB)
    backend = backend_in(mount)
    volume = backend.create_volume(spec(40 * MIB))
    live = Path(volume.location)
    write(live, 0, os.urandom(40 * MIB))
    before_tree, before_space = tree(mount), free(mount)
    with pytest.raises(NoSpace) as refused:
        backend.snapshot(volume, "copy")  # ext4 cannot reflink: 40 MiB needed, ~20 free
    assert refused.value.needed >= 40 * MIB and refused.value.available < 40 * MIB
    assert free(mount) == before_space, "something was written before the refusal"
    assert tree(mount) == before_tree, "a partial file or folder was left"
    assert backend.list_snapshots(volume) == []

    backend.snapshot(volume, "kept", retiring=True)  # moved: costs nothing
    before_tree, before_space = tree(mount), free(mount)
    with pytest.raises(NoSpace):
        backend.rollback(volume, "kept")  # a rollback copies the retained file back
    assert free(mount) == before_space and tree(mount) == before_tree
    assert not live.exists()


# ================================================================ rollback


@pytest.mark.parametrize("kind", ["ext4", "xfs"])
def test_rollback_brings_the_old_generation_back_exactly_and_again(
    loop_filesystems: MakeFilesystem, kind: Kind
) -> None:
    mount = loop_filesystems(kind, 512 * MIB)
    backend = backend_in(mount)
    vid = uuid.uuid4()
    gen0 = backend.create_volume(spec(32 * MIB, 0, vid))
    write(gen0.location, 0, os.urandom(32 * MIB))
    digest0 = sha256(gen0.location)
    info = backend.snapshot(gen0, "before-purge", retiring=True)
    gen1 = backend.create_volume(spec(32 * MIB, 1, vid))  # the purge's new generation
    write(gen1.location, 0, os.urandom(32 * MIB))
    digest1 = sha256(gen1.location)
    for _ in range(2):  # a second rollback to the same snapshot works
        result = backend.rollback(gen1, "before-purge")  # named by the live generation
        assert result.live_generation == 0
        assert sha256(gen0.location) == digest0
        assert sha256(gen1.location) == digest1, "rollback touched the generation that was live"
        write(gen0.location, 0, b"\xff" * MIB)  # the app runs on the old generation again
    assert sha256(info.name) == digest0, "the snapshot changed"
    backend.destroy_volume(gen1)  # the orchestrator frees the generation that was live
    assert not Path(gen1.location).exists()
    assert [(i.snapshot_id, i.generation) for i in backend.list_snapshots(gen0)] == [("before-purge", 0)]


def test_the_snapshot_owns_the_retained_generation_until_deleted(loop_filesystems: MakeFilesystem) -> None:
    mount = loop_filesystems("ext4", 256 * MIB)
    backend = backend_in(mount)
    volume = backend.create_volume(spec(64 * MIB))
    write(volume.location, 0, os.urandom(64 * MIB))
    digest, start = sha256(volume.location), free(mount)
    info = backend.snapshot(volume, "s", retiring=True)
    backend.destroy_volume(volume)  # the purge frees the old generation: not the snapshot's bytes
    assert sha256(info.name) == digest
    assert abs(start - free(mount)) < MIB
    backend.delete_snapshot(volume, "s")
    freed = free_once_reclaimed(mount, start + 63 * MIB) - start
    assert freed >= 63 * MIB, "the retained generation was not freed"
    assert not Path(info.name).exists() and not any(store_of(mount).iterdir())
    backend.delete_snapshot(volume, "s")  # unknown: success
    assert backend.list_snapshots(volume) == []


def test_with_two_generations_every_operation_names_its_generation(tmp_path: Path) -> None:
    backend = backend_in(tmp_path)
    vid = uuid.uuid4()
    gen0 = backend.create_volume(spec(4 * MIB, 0, vid))
    write(gen0.location, 0, b"A" * MIB)
    backend.snapshot(gen0, "daily")  # immediate: gen0 stays in use
    write(gen0.location, 0, b"B" * MIB)
    backend.snapshot(gen0, "purge", retiring=True)
    gen1 = backend.create_volume(spec(4 * MIB, 1, vid))
    write(gen1.location, 0, b"C" * MIB)

    infos = backend.list_snapshots(gen1)
    assert [(i.snapshot_id, i.generation, i.meta["retains"]) for i in infos] == [
        ("daily", 0, f"{vid}#0"),
        ("purge", 0, f"{vid}#0"),
    ]
    assert infos[1].parent == "daily"
    with pytest.raises(AlreadyExists, match=f"{vid}#0, not {vid}#1"):
        backend.snapshot(gen1, "daily")
    with pytest.raises(SnapshotNotFound, match=f"{vid}#1"):
        backend.rollback(gen1, "never-taken")
    assert backend.rollback(gen1, "daily").live_generation == 0
    assert read(gen0.location, 0, MIB) == b"A" * MIB
    assert read(gen1.location, 0, MIB) == b"C" * MIB


# ================================================================ ids, state, crashes


HOSTILE_IDS = [
    "../../../../escape",
    "/etc/passwd",
    "a/b/../c",
    "..",
    ".",
    "~root",
    "x" * 4000,
    "\u202eevil\u0000nul",
    " spaces ",
    "line\nbreak",
]


def test_snapshot_ids_never_become_paths_and_state_survives_a_new_backend(tmp_path: Path) -> None:
    persist = tmp_path / "persist"
    backend = backend_in(persist)
    volume = backend.create_volume(spec(4 * MIB))
    before = tree(tmp_path)
    for n, snapshot_id in enumerate(HOSTILE_IDS):
        write(volume.location, 0, bytes([n]) * MIB)
        backend.snapshot(volume, snapshot_id)
    made = tree(tmp_path) - before
    assert len(made) > len(HOSTILE_IDS)
    assert all(p.startswith("persist/vault/snapshots") for p in made), made

    fresh = backend_in(persist)  # a new object (an agent restart) sees the same snapshots
    infos = fresh.list_snapshots(volume)
    assert [i.snapshot_id for i in infos] == HOSTILE_IDS
    assert [i.parent for i in infos] == [None, *HOSTILE_IDS[:-1]]
    fresh.rollback(volume, "..")
    assert read(volume.location, 0, MIB) == bytes([3]) * MIB
    for snapshot_id in HOSTILE_IDS:
        fresh.delete_snapshot(volume, snapshot_id)
    assert list(store_of(persist).iterdir()) == []


def test_a_crash_between_the_move_and_the_record_is_finished_by_the_retry(tmp_path: Path) -> None:
    backend = backend_in(tmp_path)
    volume = backend.create_volume(spec(4 * MIB))
    write(volume.location, 0, b"old generation" * 1000)
    digest = sha256(volume.location)
    store = PurgeableBackend(BackendContext(persist_dir=tmp_path)).store
    moved = store.data_path(volume.uuid, volume.generation, "raw", "purge")
    moved.parent.mkdir(parents=True)
    Path(volume.location).rename(moved)  # the move happened, the record did not
    info = backend.snapshot(volume, "purge", retiring=True)
    assert info.meta["mode"] == "kept" and sha256(info.name) == digest


def test_a_clone_is_independent_of_its_snapshot(tmp_path: Path) -> None:
    backend = backend_in(tmp_path)
    volume = backend.create_volume(spec(4 * MIB))
    write(volume.location, 0, b"gen0" * MIB)
    backend.snapshot(volume, "s", retiring=True)
    clone = backend.clone(volume, "s", spec(4 * MIB))
    backend.delete_snapshot(volume, "s")
    assert read(clone.location, 0, 4 * MIB) == b"gen0" * MIB


# ================================================================ raw volumes from content


def test_raw_volumes_are_built_from_qcow2_or_raw_content(tmp_path: Path) -> None:
    backend = backend_in(tmp_path / "persist")
    image = tmp_path / "os.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "8M"])
    run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 1M", "-c", "write -P 0x43 4M 1M", str(image)])
    calls: list[tuple[int, int]] = []
    volume = backend.populate_volume(
        spec(16 * MIB), ContentSource(path=image, format="qcow2"), lambda d, t: calls.append((d, t))
    )
    assert Path(volume.location).stat().st_size == 16 * MIB
    assert read(volume.location, 0, MIB) == b"\x42" * MIB
    assert read(volume.location, MIB, 3 * MIB) == bytes(3 * MIB)
    assert read(volume.location, 4 * MIB, MIB) == b"\x43" * MIB
    assert calls[-1] == (2 * MIB, 2 * MIB)

    raw = tmp_path / "os.raw"
    raw.write_bytes(b"raw content!" * MIB)
    volume = backend.populate_volume(spec(16 * MIB), ContentSource(path=raw, format="raw"))
    assert read(volume.location, 0, 12 * MIB) == b"raw content!" * MIB

    overlay = tmp_path / "overlay.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2", str(overlay)])
    volumes = tree(tmp_path / "persist")
    with pytest.raises(FormatError, match="backing file"):
        backend.populate_volume(spec(16 * MIB), ContentSource(path=overlay, format="qcow2"))
    assert tree(tmp_path / "persist") == volumes


def test_a_handle_pointing_elsewhere_is_not_trusted(tmp_path: Path) -> None:
    backend = backend_in(tmp_path / "persist")
    volume = backend.create_volume(spec(MIB))
    victim = tmp_path / "victim"
    victim.write_bytes(b"not a volume")
    forged = VolumeHandle.model_validate(volume.model_dump() | {"location": str(victim)})
    backend.destroy_volume(forged)
    assert victim.read_bytes() == b"not a volume" and not Path(volume.location).exists()


def test_bad_input_is_refused_by_name(tmp_path: Path) -> None:
    backend = backend_in(tmp_path)
    volume = backend.create_volume(spec(MIB))
    with pytest.raises(AlreadyExists, match=volume.key):
        backend.create_volume(spec(2 * MIB, volume=volume.uuid))
    with pytest.raises(SnapshotNotFound, match=volume.key):
        backend.rollback(volume, "nope")

"""What a whole-volume backend must prove on real filesystems: O(1) retirement,
extent sharing on reflink filesystems, no-space refused before copying, exact
bytes back, and qcow2 work handed to the qcow2 backend."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core import ContentSource, NoSpace, VolumeHandle, VolumeSpec
from evesnap_core.backend import Backend
from evesnap_core.discovery import load_backends
from evesnap_core.testing.conformance.harness import qemu_io_read

MIB = 1 << 20
GIB = 1 << 30


def backend_in(persist: Path) -> Backend:
    return load_backends(persist, environ={}).get("purgeable")


def raw_volume(backend: Backend, size: int) -> VolumeHandle:
    return backend.create_volume(
        VolumeSpec(uuid=uuid.uuid4(), format="raw", size_bytes=size, purgeable=True, backend="purgeable")
    )


def free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


@contextlib.contextmanager
def mounted(kind: str, size: str, where: Path) -> Iterator[Path]:
    """A real filesystem of `kind` on a loop device (or tmpfs), removed afterwards."""
    mount = where / f"mnt-{kind}"
    mount.mkdir()
    image = where / f"{kind}.img"
    if kind == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    else:
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        mkfs = ["mkfs.xfs", "-q", "-m", "reflink=1"] if kind == "xfs" else ["mkfs.btrfs", "-q"]
        subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_retiring_is_o1_whatever_the_size(tmp_path: Path) -> None:
    backend = backend_in(tmp_path)
    timings = {}
    for size in (1 * GIB, 16 * GIB):
        volume = raw_volume(backend, 0)
        live = Path(volume.location)
        subprocess.run(["fallocate", "-l", str(size), str(live)], check=True)  # allocated, not sparse
        inode, before = live.stat().st_ino, free(tmp_path)
        start = time.perf_counter()
        info = backend.snapshot(volume, "at-purge", retiring=True)
        timings[size] = time.perf_counter() - start
        kept = Path(info.name)
        assert kept.stat().st_ino == inode, "the generation was copied instead of kept"
        assert abs(free(tmp_path) - before) < 4 * MIB, "bytes were copied"
        assert not live.exists() and info.meta["mode"] == "kept"
        assert info.size_bytes is not None and info.size_bytes >= size  # it holds the whole volume
        backend.delete_snapshot(volume, "at-purge")
    print(f"retiring snapshot: 1 GiB {timings[GIB] * 1000:.1f} ms, 16 GiB {timings[16 * GIB] * 1000:.1f} ms")


def test_rollback_brings_the_retired_generation_back_and_can_repeat(tmp_path: Path) -> None:
    backend = backend_in(tmp_path)
    volume = raw_volume(backend, 4 * MIB)
    Path(volume.location).write_bytes(b"gen0" * MIB)
    backend.snapshot(volume, "s", retiring=True)
    for _ in range(2):  # a second rollback to the same snapshot works
        result = backend.rollback(volume, "s")
        assert result.live_generation == volume.generation
        assert Path(volume.location).read_bytes() == b"gen0" * MIB
        Path(volume.location).write_bytes(b"changed!" * MIB)


@pytest.mark.parametrize("kind", ["xfs", "btrfs"])
def test_reflink_copies_share_extents(tmp_path: Path, kind: str) -> None:
    with mounted(kind, "1G", tmp_path) as mount:
        backend = backend_in(mount)
        volume = raw_volume(backend, 0)
        with open(volume.location, "wb") as f:
            f.write(os.urandom(MIB) * 200)
            os.fsync(f.fileno())
        before = free(mount)
        info = backend.snapshot(volume, "immediate")
        assert info.meta["mode"] == "reflink"
        assert before - free(mount) < 8 * MIB, (
            f"{(before - free(mount)) / MIB:.0f} MiB used by a reflink copy"
        )
        Path(volume.location).write_bytes(b"x" * MIB)
        backend.rollback(volume, "immediate")
        with open(volume.location, "rb") as f:
            assert f.read(MIB) != b"x" * MIB


def test_full_copy_without_reflink_and_no_space_refused_first(tmp_path: Path) -> None:
    with mounted("tmpfs", "96M", tmp_path) as mount:
        backend = backend_in(mount)
        volume = raw_volume(backend, 0)
        Path(volume.location).write_bytes(b"\x5a" * 40 * MIB)
        info = backend.snapshot(volume, "one")  # room for one full copy
        assert info.meta["mode"] == "copy"
        assert Path(info.name).read_bytes() == b"\x5a" * 40 * MIB
        before = sorted(p.name for p in mount.rglob("*"))
        space = free(mount)
        with pytest.raises(NoSpace):
            backend.snapshot(volume, "two")  # no room for another: refused before writing
        assert free(mount) == space and sorted(p.name for p in mount.rglob("*")) == before


def test_qcow2_volumes_are_made_by_the_qcow2_backend(tmp_path: Path) -> None:
    backend = backend_in(tmp_path)
    content = tmp_path / "os.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(content), "8M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 1M", str(content)], check=True, capture_output=True
    )
    spec = VolumeSpec(
        uuid=uuid.uuid4(), format="qcow2", size_bytes=8 * MIB, purgeable=True, backend="purgeable"
    )
    volume = backend.populate_volume(spec, ContentSource(path=content, format="qcow2"))
    assert volume.backend == "purgeable" and volume.location.endswith(".qcow2")
    assert backend.volume_details(volume).format == "qcow2"
    backend.snapshot(volume, "s", retiring=True)
    assert not Path(volume.location).exists()
    backend.rollback(volume, "s")
    assert qemu_io_read(volume.location, "qcow2", 0, MIB) == b"\x42" * MIB
    backend.destroy_volume(volume)
    assert not Path(volume.location).exists()
    assert [i.snapshot_id for i in backend.list_snapshots(volume)] == ["s"]  # the snapshot keeps its data

"""Loop filesystems are real (the kernel says what is mounted) and always taken
down: unmounted, loop device detached, image removed, also after a failure and
while something still holds the mount."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evesnap_core.errors import ConfigError
from evesnap_core.testing.loopfs import (
    MIB,
    MIN_SIZE,
    Kind,
    loop_filesystem,
    loop_filesystem_fixture,
    skip_unless_loop_possible,
)

ext4_mount = loop_filesystem_fixture("ext4", 16 * MIB)


def mounted_fstype(path: Path) -> str | None:
    """What /proc/self/mountinfo says is mounted exactly at `path`."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path):
            return fields[fields.index("-") + 1]
    return None


def loop_devices_backed_by(folder: Path) -> list[str]:
    """Loop devices whose backing file lies in `folder` (unique per test)."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        if backing.read_text().strip().startswith(str(folder) + "/"):
            found.append(backing.parent.parent.name)
    return found


def assert_taken_down(workdir: Path, mountpoint: Path) -> None:
    assert mounted_fstype(mountpoint) is None, f"{mountpoint} is still mounted"
    assert loop_devices_backed_by(workdir) == [], "a loop device is still attached"
    assert list(workdir.iterdir()) == [], "the image or mount point was left behind"


@pytest.mark.parametrize("kind", ["ext4", "xfs", "btrfs"])
def test_the_smallest_filesystem_of_each_kind_mounts_and_goes(tmp_path: Path, kind: Kind) -> None:
    skip_unless_loop_possible(kind)
    with loop_filesystem(kind, MIN_SIZE[kind], tmp_path) as mount:
        assert mounted_fstype(mount) == kind
        assert len(loop_devices_backed_by(tmp_path)) == 1
        (mount / "f").write_bytes(b"on a real filesystem")
        stat = os.statvfs(mount)
        assert stat.f_blocks * stat.f_frsize <= MIN_SIZE[kind]
    assert_taken_down(tmp_path, mount)


def test_a_failing_test_still_takes_everything_down(tmp_path: Path) -> None:
    skip_unless_loop_possible("ext4")
    with (
        pytest.raises(RuntimeError, match="the test failed"),
        loop_filesystem("ext4", 8 * MIB, tmp_path) as mount,
    ):
        (mount / "f").write_bytes(b"x")
        raise RuntimeError("the test failed")
    assert_taken_down(tmp_path, mount)


def test_a_held_mount_is_unmounted_lazily_and_its_device_freed_on_release(tmp_path: Path) -> None:
    skip_unless_loop_possible("ext4")
    with loop_filesystem("ext4", 8 * MIB, tmp_path) as mount:
        held = open(mount / "held", "wb")  # noqa: SIM115 (what a forgotten QEMU would do)
    try:
        assert mounted_fstype(mount) is None
        assert list(tmp_path.iterdir()) == []
    finally:
        held.close()
    # the device was told to detach itself when released: nothing stays behind
    deadline = time.monotonic() + 10
    while loop_devices_backed_by(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop_devices_backed_by(tmp_path) == []


def test_bad_requests_are_refused_before_anything_is_made(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match="xfs needs at least 300 MiB"),
        loop_filesystem("xfs", 100 * MIB, tmp_path),
    ):
        pass
    with (
        pytest.raises(ConfigError, match="'zfs' is not one of"),
        loop_filesystem(
            "zfs",  # type: ignore[arg-type]
            100 * MIB,
            tmp_path,
        ),
    ):
        pass
    with pytest.raises(ConfigError, match="btrfs needs at least"):
        loop_filesystem_fixture("btrfs", 10 * MIB)
    assert list(tmp_path.iterdir()) == []


def test_the_fixture_factory_gives_a_mounted_filesystem(ext4_mount: Path) -> None:
    assert mounted_fstype(ext4_mount) == "ext4"


@pytest.mark.parametrize("kind", ["ext4", "btrfs"])
def test_the_factory_fixture_makes_several(loop_filesystems: Callable[[Kind, int], Path], kind: Kind) -> None:
    first, second = loop_filesystems(kind, MIN_SIZE[kind]), loop_filesystems("ext4", 4 * MIB)
    assert mounted_fstype(first) == kind and mounted_fstype(second) == "ext4"
    assert first != second

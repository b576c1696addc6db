"""Real filesystems for tests: a sparse image file on a loop device, formatted
and mounted, and always taken down again.

Backends behave differently on ext4 (no reflink), XFS and btrfs (reflink,
shared extents), and a full disk is only honest on a real filesystem. These
helpers make one per test in the test's own folder (parallel-safe), through
`evesnap_core.process.run`, and undo every step that succeeded even when the
test or a later step fails: unmount (lazily when something still holds the
mount), detach the loop device (retried), remove the image.

    with loop_filesystem("xfs", 512 * MIB, tmp_path) as mount:
        ...

    # in a conftest or test module
    xfs_mount = loop_filesystem_fixture("xfs", 512 * MIB)
    from evesnap_core.testing.loopfs import loop_filesystems  # (kind, size) -> mount

Root is needed (losetup, mount); the fixtures skip, saying why, when this
process cannot attach loop devices. Anything else that goes wrong fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, get_args

import pytest

from evesnap_core.errors import CommandFailed, ConfigError, EvesnapError
from evesnap_core.process import run

Kind = Literal["ext4", "xfs", "btrfs"]
KINDS: tuple[Kind, ...] = get_args(Kind)
MIB = 1 << 20

MIN_SIZE: dict[Kind, int] = {"ext4": 1 * MIB, "xfs": 300 * MIB, "btrfs": 109 * MIB}
"""The smallest filesystem each mkfs accepts (measured with the tools shipped here)."""

MKFS: dict[Kind, tuple[str, ...]] = {
    # no reserved blocks: root may write into them, so free space would lie
    "ext4": ("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard"),
    "xfs": ("mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=1"),
    "btrfs": ("mkfs.btrfs", "-q", "-f", "-K"),
}

LOOP_CONTROL = Path("/dev/loop-control")
TOOL_TIMEOUT = 120.0
ATTEMPTS = 5
RETRY_PAUSE = 0.2
LOOP_DEVICE = re.compile(r"/dev/loop[0-9]+")


def loop_unavailable_reason(kind: Kind) -> str | None:
    """Why this process cannot make a `kind` loop filesystem, or None if it can:
    the one condition under which a test may skip instead of fail."""
    if os.geteuid() != 0:
        return "loop filesystems need root (losetup, mount)"
    if not LOOP_CONTROL.exists():
        return f"{LOOP_CONTROL} is missing: no loop devices in this container"
    for tool in ("losetup", "mount", "umount", MKFS[kind][0]):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _check_request(kind: str, size: int) -> Kind:
    if kind not in KINDS:
        raise ConfigError("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if size < MIN_SIZE[kind]:
        raise ConfigError(
            "size", f"{kind} needs at least {MIN_SIZE[kind] // MIB} MiB, asked for {size / MIB:.1f} MiB"
        )
    return kind


@contextlib.contextmanager
def loop_filesystem(kind: Kind, size: int, workdir: Path) -> Iterator[Path]:
    """Mount a fresh `kind` filesystem of `size` bytes under `workdir` and yield
    its mount point; on exit (also on failure) unmount it, detach its loop
    device and remove its image, so that no test leaks kernel state."""
    checked = _check_request(kind, size)
    name = f"loopfs-{checked}-{uuid.uuid4().hex[:8]}"
    image = workdir / f"{name}.img"
    mountpoint = workdir / name
    with contextlib.ExitStack() as undo:
        with open(image, "xb") as f:  # sparse: costs only what the filesystem writes
            f.truncate(size)
        undo.callback(_remove, image)
        result = run(["losetup", "--find", "--show", str(image)], timeout=TOOL_TIMEOUT)
        device = result.stdout.decode().strip()
        if not LOOP_DEVICE.fullmatch(device):
            raise EvesnapError(f"losetup attached {image} but printed {device!r}, not a loop device")
        undo.callback(_detach, device)
        run([*MKFS[checked], device], timeout=TOOL_TIMEOUT)
        mountpoint.mkdir(mode=0o700)
        undo.callback(_remove_dir, mountpoint)
        run(["mount", "-t", checked, device, str(mountpoint)], timeout=TOOL_TIMEOUT)
        undo.callback(_unmount, mountpoint)
        yield mountpoint


def _unmount(mountpoint: Path) -> None:
    """Unmount, retrying while something briefly holds it, then lazily: a
    process a test forgot must not keep the device attached forever."""
    for _ in range(ATTEMPTS):
        try:
            run(["umount", str(mountpoint)], timeout=TOOL_TIMEOUT)
            return
        except CommandFailed:
            time.sleep(RETRY_PAUSE)
    run(["umount", "--lazy", str(mountpoint)], timeout=TOOL_TIMEOUT)


def _detach(device: str) -> None:
    """Detach the loop device; a device still busy (lazily unmounted) is marked
    to detach itself when released, which losetup reports as success."""
    for attempt in range(ATTEMPTS):
        try:
            run(["losetup", "--detach", device], timeout=TOOL_TIMEOUT)
            return
        except CommandFailed:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(RETRY_PAUSE)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _remove_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()


# ---------------------------------------------------------------- pytest


def skip_unless_loop_possible(kind: Kind) -> None:
    """Skip the calling test, saying why, when loop filesystems cannot be made here."""
    reason = loop_unavailable_reason(kind)
    if reason is not None:
        pytest.skip(reason)


def loop_filesystem_fixture(kind: Kind, size: int) -> Callable[..., Iterator[Path]]:
    """A fixture giving each test its own mounted `kind` filesystem; assign it
    to a name in a conftest or test module (the name is the fixture's name)."""
    _check_request(kind, size)

    @pytest.fixture
    def mounted(tmp_path: Path) -> Iterator[Path]:
        skip_unless_loop_possible(kind)
        with loop_filesystem(kind, size, tmp_path) as mountpoint:
            yield mountpoint

    return mounted


@pytest.fixture
def loop_filesystems(tmp_path: Path) -> Iterator[Callable[[Kind, int], Path]]:
    """A factory fixture, `(kind, size) -> mount point`, for tests parametrized
    over filesystem kinds; every filesystem it made is taken down after the test."""
    with contextlib.ExitStack() as stack:
        count = 0

        def make(kind: Kind, size: int) -> Path:
            nonlocal count
            skip_unless_loop_possible(kind)
            count += 1
            workdir = tmp_path / f"loopfs{count}"
            workdir.mkdir()
            return stack.enter_context(loop_filesystem(kind, size, workdir))

        yield make

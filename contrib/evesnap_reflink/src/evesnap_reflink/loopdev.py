"""Read-only loop devices: how a snapshot is shown to standard tools.

``chmod`` does not stop root, and the agent runs as root; a loop device
attached with ``--read-only`` does: the kernel refuses every write to it
(EPERM), whoever asks. Loop devices are a machine-wide resource, so a device is
only ever detached after checking that it still serves the file we attached.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from evesnap_core import EvesnapError
from evesnap_core.toolkit import run

LOSETUP_TIMEOUT = 30.0
SYS_BLOCK = Path("/sys/block")
LOOP_CONTROL = "/dev/loop-control"
DELETED_SUFFIX = " (deleted)"


def usable() -> bool:
    """Whether this process can attach loop devices (root, or access to
    /dev/loop-control, and losetup): without it, read_only is not declared."""
    return shutil.which("losetup") is not None and os.access(LOOP_CONTROL, os.R_OK | os.W_OK)


def attach_read_only(image: Path) -> str:
    """A new read-only loop device (``/dev/loopN``) over `image`."""
    result = run(["losetup", "--read-only", "--find", "--show", str(image)], timeout=LOSETUP_TIMEOUT)
    device = result.stdout.decode().strip()
    if not device.startswith("/dev/loop"):
        raise EvesnapError(f"losetup attached {image} but printed {device!r} instead of a loop device")
    return device


def backing_file(device: str) -> str | None:
    """The file a loop device serves now, or None when it is detached or gone."""
    path = SYS_BLOCK / Path(device).name / "loop" / "backing_file"
    try:
        backing = path.read_text(encoding="utf-8").rstrip("\n")
    except OSError:
        return None
    return backing.removesuffix(DELETED_SUFFIX)


def serving(device: str, image: Path) -> bool:
    """Whether `device` still serves `image` (a reboot detaches every loop device,
    and the kernel reuses their numbers)."""
    return backing_file(device) == os.path.realpath(image)


def detach_if_serving(device: str, image: Path) -> None:
    """Detach `device` if it still serves `image`; a device since detached, or
    reused for another file, is left alone. Idempotent."""
    if not serving(device, image):
        return
    run(["losetup", "--detach", device], timeout=LOSETUP_TIMEOUT)


def devices_under(folder: Path) -> Iterator[tuple[str, str]]:
    """(device, backing file) of every loop device serving a file under `folder`:
    how leftovers are found after a crash lost the record of them."""
    prefix = os.path.realpath(folder).rstrip("/") + "/"
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(SYS_BLOCK.iterdir()):
            if not entry.name.startswith("loop"):
                continue
            backing = backing_file(f"/dev/{entry.name}")
            if backing is not None and backing.startswith(prefix):
                yield f"/dev/{entry.name}", backing


def detach_all_under(folder: Path) -> None:
    """Detach every loop device that serves a file under `folder`."""
    for device, backing in list(devices_under(folder)):
        detach_if_serving(device, Path(backing))

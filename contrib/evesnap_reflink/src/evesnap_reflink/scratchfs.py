"""A throwaway filesystem in a loop-mounted image file, for tests and the harness.

The reflink backend needs XFS or btrfs under its persist folder, and a test
machine's /tmp is usually ext4 or tmpfs; as root we can make one in a second:
a sparse image file, mkfs, ``mount -o loop`` (which detaches its loop device
by itself on unmount).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from evesnap_core import CommandFailed
from evesnap_core.toolkit import run
from evesnap_reflink.loopdev import detach_all_under

MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-m", "reflink=1"],
    "btrfs": ["mkfs.btrfs", "-q"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}
GIB = 1024**3


@dataclass(frozen=True)
class ScratchFs:
    """A mounted scratch filesystem: `mountpoint` is where to work."""

    fstype: str
    folder: Path
    """The private folder holding the image and the mount point."""

    @property
    def image(self) -> Path:
        return self.folder / f"{self.fstype}.img"

    @property
    def mountpoint(self) -> Path:
        return self.folder / "mnt"

    @classmethod
    def create(cls, fstype: str = "xfs", size: int = GIB, parent: Path | None = None) -> ScratchFs:
        """Make, format and mount a new sparse image (root only); nothing is left
        behind if a step fails."""
        made = cls(fstype, Path(tempfile.mkdtemp(prefix=f"evesnap-{fstype}-", dir=parent)))
        try:
            with open(made.image, "wb") as image:
                image.truncate(size)
            run([*MKFS[fstype], str(made.image)], timeout=60)
            made.mountpoint.mkdir(mode=0o700)
            run(["mount", "-o", "loop", str(made.image), str(made.mountpoint)], timeout=60)
        except BaseException:
            shutil.rmtree(made.folder, ignore_errors=True)
            raise
        return made

    def remove(self) -> None:
        """Unmount and delete, after detaching loop devices that still serve files
        on it (an export a failed test left open would keep it busy)."""
        if self.mountpoint.is_mount():
            detach_all_under(self.mountpoint)
            try:
                run(["umount", str(self.mountpoint)], timeout=60)
            except CommandFailed:
                run(["umount", "--lazy", str(self.mountpoint)], timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def scratch_fs(fstype: str = "xfs", size: int = GIB, parent: Path | None = None) -> Iterator[Path]:
    """A mounted scratch filesystem for the duration of the block; yields its root."""
    made = ScratchFs.create(fstype, size, parent)
    try:
        yield made.mountpoint
    finally:
        made.remove()

"""The conformance harness: how the suite reaches reflink volumes' bytes directly.

A volume is a plain raw file (``VolumeHandle.location``), so the suite reads and
writes it with ordinary file I/O, never through the backend.

The persist folder must be on a filesystem that can reflink; each harness puts
its persist folder, in order of preference, under:

1. ``reflink_dir`` (a class attribute; tests set it with ``ReflinkHarness.on(folder)``);
2. ``$EVESNAP_TEST_REFLINK_DIR``, a folder on XFS or btrfs that you provide;
3. the test's own folder, when that filesystem can reflink;
4. as root, a scratch XFS filesystem made once per process and removed at exit;
5. otherwise the test's own folder: the backend then reports itself unavailable
   and every case is skipped, naming the reason.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

from evesnap_core import VolumeHandle
from evesnap_core.testing.conformance import Harness
from evesnap_reflink import NAME
from evesnap_reflink.loopdev import detach_all_under
from evesnap_reflink.reflink import probe
from evesnap_reflink.scratchfs import ScratchFs

REFLINK_DIR_ENV = "EVESNAP_TEST_REFLINK_DIR"
"""Not ``EVESNAP_REFLINK_...``: that prefix is the backend's option namespace."""

_scratch: ScratchFs | None = None


class ReflinkHarness(Harness):
    backend_name = NAME
    volume_format = "raw"
    reflink_dir: ClassVar[Path | None] = None
    small_filesystem_kind = "xfs"  # the NoSpace cases need a filesystem that can reflink
    small_filesystem_size = 300 * 1024 * 1024

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        base = self._reflink_base()
        self._own_persist: Path | None = None
        if base is not None:
            self.persist = self._own_persist = Path(tempfile.mkdtemp(prefix=f"{workdir.name}-", dir=base))

    @classmethod
    def on(cls, folder: Path) -> type[ReflinkHarness]:
        """This harness with every persist folder under `folder`."""
        return type(f"{cls.__name__}On", (cls,), {"reflink_dir": folder})

    def _reflink_base(self) -> Path | None:
        """Where persist folders go; None keeps the default (workdir/persist)."""
        if self.reflink_dir is not None:
            return self.reflink_dir
        if os.environ.get(REFLINK_DIR_ENV):
            return Path(os.environ[REFLINK_DIR_ENV])
        if not probe(self.persist):
            return None
        if os.geteuid() == 0 and shutil.which("mkfs.xfs"):
            return _shared_scratch()
        return None

    # ------------------------------------------------------------ bytes, outside the backend

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        with open(volume.location, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        with open(volume.location, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def cleanup(self) -> None:
        """Detach loop devices a failed case left open, then drop the persist folder."""
        detach_all_under(self.persist)
        if self._own_persist is not None:
            shutil.rmtree(self._own_persist, ignore_errors=True)
        super().cleanup()


def _shared_scratch() -> Path:
    """One scratch XFS per process (made on first use, removed at exit): what
    `evesnap conformance reflink` runs on when /tmp cannot reflink."""
    global _scratch
    if _scratch is None:
        _scratch = ScratchFs.create("xfs")
        atexit.register(_scratch.remove)
    return _scratch.mountpoint

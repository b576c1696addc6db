"""The conformance harness for evesnap-zfs: bytes through the zvol's device with
O_DIRECT (no page cache can hide a stale block), on the pool the ZFS VM makes."""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from evesnap_core import VolumeHandle
from evesnap_core.testing.conformance import Harness
from evesnap_core.toolkit import run
from evesnap_zfs.devices import device_path, flush_buffers

ALIGN = 4096
SMALL_POOL = 64 * 1024 * 1024


class ZfsHarness(Harness):
    backend_name = "zfs"
    volume_format = "zvol"

    def _environ(self) -> Mapping[str, str]:
        env = dict(super().environ())
        env.setdefault("EVESNAP_ZFS_POOL", os.environ.get("ZFSVM_POOL", "evesnaptest"))
        # every test its own prefix: nothing one test leaves can disturb another
        # (a stable digest, not hash(): a new process must find the same datasets)
        env["EVESNAP_ZFS_PREFIX"] = "t" + hashlib.sha256(str(self.workdir).encode()).hexdigest()[:10]
        return env

    pool: str | None = None

    def environ(self) -> Mapping[str, str]:
        env = dict(self._environ())
        if self.pool is not None:
            env["EVESNAP_ZFS_POOL"] = self.pool
        return env

    @contextlib.contextmanager
    def on_small_filesystem(self) -> Iterator[Harness | None]:
        """A new small pool on a file vdev (64 MiB), destroyed on the way out."""
        vdev = self.workdir / "small-pool.img"
        with open(vdev, "wb") as f:
            f.truncate(SMALL_POOL)
        name = "evesnap-small-" + hashlib.sha256(str(self.workdir).encode()).hexdigest()[:8]
        run(["zpool", "create", "-f", "-O", "mountpoint=none", name, str(vdev)], timeout=120)
        small = type(self)(self.workdir / "small")
        small.pool = name
        try:
            yield small
        finally:
            small.cleanup()
            run(["zpool", "destroy", "-f", name], timeout=120)
            vdev.unlink()

    def free_bytes(self) -> int:
        pool = self.environ()["EVESNAP_ZFS_POOL"]
        out = run(["zfs", "get", "-Hp", "-o", "value", "available", pool], timeout=60)
        return int(out.stdout.decode().strip())

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        fd = os.open(device_path(volume.location), os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        flush_buffers(volume.location)

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        return read_direct(device_path(volume.location), offset, length)


def read_direct(path: Path, offset: int, length: int) -> bytes:
    """Read with O_DIRECT (aligned buffer and range), then slice."""
    start = offset - offset % ALIGN
    end = offset + length
    size = end - start + (-(end - start) % ALIGN)
    buf = mmap.mmap(-1, size)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        got = os.preadv(fd, [buf], start)
    finally:
        os.close(fd)
    return bytes(buf[offset - start : offset - start + length]) if got else b""

"""The conformance harness for evesnap-zfs: bytes through the zvol's device with
O_DIRECT (no page cache can hide a stale block), on the pool the ZFS VM makes."""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from pathlib import Path

from evesnap_core import VolumeHandle
from evesnap_core.testing.conformance import Harness
from evesnap_zfs.devices import device_path, flush_buffers

ALIGN = 4096


class ZfsHarness(Harness):
    backend_name = "zfs"
    volume_format = "zvol"

    def environ(self) -> Mapping[str, str]:
        env = dict(super().environ())
        env.setdefault("EVESNAP_ZFS_POOL", os.environ.get("ZFSVM_POOL", "evesnaptest"))
        # every test its own prefix: nothing one test leaves can disturb another
        env["EVESNAP_ZFS_PREFIX"] = "t" + str(abs(hash(self.workdir)) % 10**10)
        return env

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

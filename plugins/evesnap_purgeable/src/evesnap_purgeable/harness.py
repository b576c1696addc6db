"""The conformance harness for evesnap-purgeable: raw volumes, read and written
with plain file I/O, never through the backend."""

from __future__ import annotations

import os

from evesnap_core import VolumeHandle
from evesnap_core.testing.conformance import Harness


class PurgeableHarness(Harness):
    backend_name = "purgeable"
    volume_format = "raw"

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        fd = os.open(volume.location, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        with open(volume.location, "rb") as f:
            f.seek(offset)
            return f.read(length)

"""The conformance harness for evesnap-qcow2: bytes through qemu's own tools;
live cases with the volumes held by the core's VM harness (a real QEMU)."""

from __future__ import annotations

from evesnap_core import VolumeHandle
from evesnap_core.testing.conformance import Harness, qemu_io_read, qemu_io_write


class Qcow2Harness(Harness):
    backend_name = "qcow2"
    volume_format = "qcow2"

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        qemu_io_write(volume.location, "qcow2", offset, data)

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        return qemu_io_read(volume.location, "qcow2", offset, length)

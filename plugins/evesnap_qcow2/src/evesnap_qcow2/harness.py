"""The conformance harness for evesnap-qcow2: bytes through qemu's own tools,
live cases with the volumes held by a real QEMU (the evesnap QEMU runtime)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from evesnap_core import VolumeHandle
from evesnap_core.qemu import QmpClient
from evesnap_core.runtime_hookspecs import AppSpec
from evesnap_core.runtimes.qemu import QemuRuntime
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.testing.conformance import Harness, byte_runs, qemu_io_read, qemu_io_write


class Qcow2Harness(Harness):
    backend_name = "qcow2"
    volume_format = "qcow2"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        # QMP and NBD sockets need a short path (unix sockets stop at 108 bytes)
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="evesnap-", dir="/tmp"))

    def cleanup(self) -> None:
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        qemu_io_write(volume.location, "qcow2", offset, data)

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        return qemu_io_read(volume.location, "qcow2", offset, length)

    @contextlib.contextmanager
    def attached(self, volumes: Sequence[VolumeHandle]) -> Iterator[list[VolumeHandle] | None]:
        runtime = Runtime(QemuRuntime(self.persist, runtime_dir=self.runtime_dir))
        app = AppSpec(uuid=uuid.uuid4(), name="conformance", version="1", volumes=tuple(volumes))
        runtime.start(app)
        try:
            held = runtime.attachments(app.uuid)
            yield [v.attached(held[v.key]) for v in volumes]
        finally:
            runtime.stop(app.uuid, timeout=30)

    def write_attached(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        held = volume.attachment
        assert held is not None and held.device, "the runtime names the guest device"
        with QmpClient(held.qmp_socket) as qmp:  # through the guest's device, as the guest writes
            for start, value, length in byte_runs(data):
                qmp.hmp(f'qemu-io -d {held.device} "write -P {value} {offset + start} {length}"')
            qmp.hmp(f'qemu-io -d {held.device} "flush"')

"""A qemu-system process holding disk images, for live tests and benchmarks.

Test support, not the product: the agent runs apps through the QEMU runtime
(`evesnap_core.runtimes.qemu`); both build their command line with
`evesnap_core.qemu.command_line`.

No guest OS is needed: QEMU with the images attached holds them exactly as a
running app would (write locks, its own qcow2 caches), and takes QMP commands.
Each disk is a ``-blockdev`` file node plus a format node with a KNOWN node
name, behind a virtio-blk device, so a backend can snapshot it live.

Two QMP monitors: ``control`` for the code under test, ``watch`` for an
observer. QEMU serves one client per monitor, so an observer on the control
socket would lock the code under test out; on its own socket it sees every
event (a STOP would prove the guest was paused).

The process is started with ``-daemonize`` through :func:`evesnap_core.process.run`
(which waits until QEMU is fully up) and is always stopped on leaving the
``with`` block: ``quit`` over QMP, then SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from evesnap_core.errors import AppRuntimeError, CommandFailed, QmpError
from evesnap_core.handler_types import LiveAttachment
from evesnap_core.process import run
from evesnap_core.qemu.command_line import QEMU_SYSTEM, Drive, command_line
from evesnap_core.qemu.qmp_client import QmpClient

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
MAX_SOCKET_PATH = 107
"""sun_path holds 108 bytes with the terminating NUL."""
NODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,30}$")


class Disk(BaseModel):
    """One image to attach: its file, its format, the node name QMP will know it by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    node_name: str = Field(pattern=NODE_NAME.pattern)
    format: Literal["qcow2", "raw"] = "qcow2"
    cache_direct: bool = False
    """O_DIRECT on the image file (``cache.direct=on``)."""


def drive(disk: Disk, index: int) -> Drive:
    """`disk` as the command line's drive ``disk<index>``."""
    return Drive(
        blockdev={
            "driver": disk.format,
            "node-name": disk.node_name,
            "file": {
                "driver": "file",
                "filename": str(disk.path.resolve()),
                "node-name": f"{disk.node_name}-file",
                "cache": {"direct": disk.cache_direct},
            },
        },
        device_id=f"disk{index}",
    )


class QemuProcess:
    """A running qemu-system with `disks` attached; use as a context manager."""

    def __init__(
        self,
        disks: Sequence[Disk],
        runtime_dir: Path,
        *,
        accel: str = "tcg",
        memory_mb: int = 64,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        names = [d.node_name for d in disks]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique: {names}")
        self.disks = tuple(disks)
        self.name = f"evesnap-vm-{uuid.uuid4().hex[:12]}"
        self.control_socket = runtime_dir / f"{self.name}.qmp"
        self.watch_socket = runtime_dir / f"{self.name}.watch.qmp"
        self.pidfile = runtime_dir / f"{self.name}.pid"
        if len(os.fsencode(self.watch_socket)) > MAX_SOCKET_PATH:
            raise ValueError(f"{runtime_dir} is too deep for a unix socket path; use a short folder")
        self.runtime_dir = runtime_dir
        self.accel = accel
        self.memory_mb = memory_mb
        self.start_timeout = start_timeout
        self.pid: int | None = None

    def argv(self) -> list[str]:
        """The qemu-system command line (no shell ever sees it)."""
        return command_line(
            self.name,
            accel=self.accel,
            memory_mb=self.memory_mb,
            qmp_sockets=(self.control_socket, self.watch_socket),
            pidfile=self.pidfile,
            drives=[drive(disk, index) for index, disk in enumerate(self.disks)],
        )

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> QemuProcess:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start QEMU and return once its QMP monitor answers; on any failure
        nothing is left running."""
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            run(self.argv(), timeout=self.start_timeout)
            self.pid = int(self.pidfile.read_text().strip())
            with self.client() as qmp:
                qmp.query_status()
        except (CommandFailed, QmpError, OSError, ValueError) as exc:
            self.stop()
            raise AppRuntimeError(f"{QEMU_SYSTEM} did not start: {exc}") from exc
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        """Whether our QEMU still runs (its pid, checked against its unique name)."""
        if self.pid is None:
            return False
        try:
            return self.name.encode() in Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Quit QEMU (it flushes its images), SIGKILL it if it does not go in time,
        and remove its sockets. Idempotent."""
        if self.pid is None and self.pidfile.exists():
            with contextlib.suppress(OSError, ValueError):
                self.pid = int(self.pidfile.read_text().strip())
        if self.alive():
            with contextlib.suppress(QmpError), QmpClient(self.control_socket, connect_timeout=2) as qmp:
                qmp.command("quit", timeout=2)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.alive() and self.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.02)
        for leftover in (self.control_socket, self.watch_socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    # ------------------------------------------------------------ access

    def client(self, **timeouts: float) -> QmpClient:
        """A connection to the control monitor (connect it with ``with``)."""
        return QmpClient(self.control_socket, **timeouts)

    def watcher(self) -> QmpClient:
        """A connection to the watch monitor, for an observer of events."""
        return QmpClient(self.watch_socket)

    def attachment(self, node_name: str) -> LiveAttachment:
        """How a backend reaches the disk `node_name` while this VM holds it."""
        if node_name not in {d.node_name for d in self.disks}:
            raise KeyError(f"no disk with node name {node_name!r}")
        return LiveAttachment(qmp_socket=self.control_socket, node_name=node_name, vm=self.name)

    def attachments(self) -> list[LiveAttachment]:
        """One attachment per disk, in the order the disks were given."""
        return [self.attachment(d.node_name) for d in self.disks]

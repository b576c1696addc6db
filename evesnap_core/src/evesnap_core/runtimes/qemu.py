"""The QEMU runtime: each app is a real ``qemu-system`` process.

The VM outlives the evesnap command that started it (``-daemonize``), so its
state lives in files under ``<persist>/run/apps/<app uuid>/``: the pid file,
the QMP socket, and the list of volumes it was started with. Each volume is
attached as a ``-blockdev`` with a known node name (``vol<i>`` for the format
node), which is what a backend needs to snapshot it live over QMP. No guest OS
is needed: QEMU with its volumes attached holds them open exactly as a running
app would.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from evesnap_core.durable import atomic_write, durable_unlink, ensure_dir
from evesnap_core.errors import AppRuntimeError, CommandFailed
from evesnap_core.handler_types import LiveAttachment, VolumeHandle
from evesnap_core.process import run
from evesnap_core.qemu.command_line import Drive, command_line
from evesnap_core.runtime_hookspecs import AppRunState, AppSpec, runtime_hookimpl
from evesnap_core.settings import RUNTIME_DIR_ENV, default_runtime_dir

START_TIMEOUT = 60.0


class _Started(BaseModel):
    """What the runtime remembers of a VM it started."""

    app: UUID
    pid: int
    volumes: list[VolumeHandle]


def node_name(index: int) -> str:
    """The format node of the app's `index`-th volume inside QEMU."""
    return f"vol{index}"


def device_id(index: int) -> str:
    """The qdev id of the app's `index`-th disk."""
    return f"disk{index}"


def guest_device(index: int) -> str:
    """The qdev path of the block device the guest writes through (``qemu-io -d``)."""
    return f"/machine/peripheral/{device_id(index)}/virtio-backend"


def _drive(index: int, volume: VolumeHandle) -> Drive:
    if volume.format == "zvol":
        file_node: dict[str, Any] = {"driver": "host_device", "filename": f"/dev/zvol/{volume.location}"}
        fmt = "raw"
    else:
        file_node = {"driver": "file", "filename": str(Path(volume.location).resolve())}
        fmt = volume.format
    return Drive(
        blockdev={
            "driver": fmt,
            "node-name": node_name(index),
            "file": {**file_node, "node-name": f"file{index}"},
            "read-only": False,
        },
        device_id=device_id(index),
    )


class QemuRuntime:
    """Runs apps as daemonized qemu-system processes (TCG, no guest OS needed)."""

    def __init__(
        self,
        persist_dir: Path,
        accel: str = "tcg",
        memory_mb: int | None = None,
        runtime_dir: Path | None = None,
    ) -> None:
        self.root = persist_dir / "run" / "apps"
        self.sockets = runtime_dir or default_runtime_dir()
        self.tag = hashlib.sha256(str(persist_dir.resolve()).encode()).hexdigest()[:8]
        self.accel = accel
        self.memory_mb = memory_mb

    def _socket(self, app: UUID) -> Path:
        sock = self.sockets / f"{self.tag}-{app}.qmp"
        if len(str(sock).encode()) >= 108:
            raise AppRuntimeError(
                f"QMP socket path {sock} is too long for a unix socket; "
                f"set {RUNTIME_DIR_ENV} to a short folder such as /run/evesnap"
            )
        return sock

    def _dir(self, app: UUID) -> Path:
        return self.root / str(app)

    def _started(self, app: UUID) -> _Started | None:
        try:
            return _Started.model_validate_json((self._dir(app) / "started.json").read_bytes())
        except (OSError, ValueError):
            return None

    def _alive(self, started: _Started) -> bool:
        try:
            cmdline = Path(f"/proc/{started.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return f"evesnap-{started.app}".encode() in cmdline

    # ------------------------------------------------------------ hooks

    @runtime_hookimpl
    def evesnap_runtime_name(self) -> str:
        return "qemu"

    @runtime_hookimpl
    def evesnap_runtime_start(self, app: AppSpec) -> None:
        started = self._started(app.uuid)
        if started is not None and self._alive(started):
            return
        folder = ensure_dir(self._dir(app.uuid))
        ensure_dir(self.sockets)
        sock, pidfile = self._socket(app.uuid), folder / "qemu.pid"
        for stale in (sock, pidfile):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        argv = command_line(
            f"evesnap-{app.uuid}",
            accel=self.accel,
            memory_mb=self.memory_mb or app.memory_mb,
            qmp_sockets=(sock,),
            pidfile=pidfile,
            drives=[_drive(index, volume) for index, volume in enumerate(app.volumes)],
        )
        try:
            run(argv, timeout=START_TIMEOUT)
        except CommandFailed as exc:
            raise AppRuntimeError(f"app {app.uuid} ({app.name}) failed to start: {exc}") from exc
        pid = int(pidfile.read_text().strip())
        record = _Started(app=app.uuid, pid=pid, volumes=list(app.volumes))
        atomic_write(folder / "started.json", record.model_dump_json().encode())
        deadline = time.monotonic() + START_TIMEOUT
        while not sock.exists():  # QMP listens before -daemonize returns, but be sure
            if time.monotonic() > deadline:
                raise AppRuntimeError(f"app {app.uuid}: QMP socket {sock} never appeared")
            time.sleep(0.02)

    @runtime_hookimpl
    def evesnap_runtime_stop(self, app_id: UUID, timeout: float) -> bool:
        started = self._started(app_id)
        if started is not None and self._alive(started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.pid, signal.SIGTERM)  # QEMU quits cleanly, flushing its images
            deadline = time.monotonic() + timeout
            while self._alive(started):
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(started.pid, signal.SIGKILL)
                    time.sleep(0.1)
                    break
                time.sleep(0.02)
        if started is not None and self._alive(started):
            return False
        durable_unlink(self._dir(app_id) / "started.json")  # stopped on purpose: not a crash
        return True

    @runtime_hookimpl
    def evesnap_runtime_state(self, app_id: UUID) -> AppRunState:
        started = self._started(app_id)
        if started is None:
            return "stopped"
        return "running" if self._alive(started) else "crashed"

    @runtime_hookimpl
    def evesnap_runtime_attachments(self, app_id: UUID) -> Mapping[str, LiveAttachment]:
        started = self._started(app_id)
        if started is None or not self._alive(started):
            return {}
        sock = self._socket(app_id)
        return {
            volume.key: LiveAttachment(
                qmp_socket=sock, node_name=node_name(i), device=guest_device(i), vm=str(app_id)
            )
            for i, volume in enumerate(started.volumes)
        }

    @runtime_hookimpl
    def evesnap_runtime_running_apps(self) -> Sequence[UUID]:
        if not self.root.is_dir():
            return []
        apps = []
        for folder in self.root.iterdir():
            with contextlib.suppress(ValueError):
                app = UUID(folder.name)
                started = self._started(app)
                if started is not None and self._alive(started):
                    apps.append(app)
        return apps

"""The QEMU runtime: each app is a real ``qemu-system`` process.

The VM outlives the evesnap command that started it (``-daemonize``), so its
state lives in files under ``<persist>/run/apps/<app uuid>/``: the start
intent (written before QEMU is launched), the pid file, and the list of volumes
it was started with (``started.json``, once it runs).

A VM is never lost: an evesnap killed between the launch and ``started.json``
leaves a QEMU that the next start finds -- by its pid file, by its
``-name evesnap-<uuid>`` with this persist folder's pid file path on its
command line, or as the holder of one of the app's images -- and adopts (same
volumes as the intent) or stops before it starts another.

Each VM has two QMP monitors: evesnap's own, in a folder only its user can
enter (``<runtime dir>/own/``), which backends use for live snapshots, and one
for operators and tests (``<runtime dir>/<tag>-<app>.qmp``): a client holding
the operators' monitor never blocks evesnap. Each volume is
attached as a ``-blockdev`` with a known node name (``vol<i>`` for the format
node), which is what a backend needs to snapshot it live over QMP. No guest OS
is needed: QEMU with its volumes attached holds them open exactly as a running
app would.

A local setting (``EVESNAP_QEMU_GUEST``: a JSON file, `GuestSettings`) adds a
guest-agent channel (its socket beside evesnap's own monitor, ``<runtime
dir>/own/<tag>-<app>.qga``), which quiesced snapshots use, and may boot a Linux
guest directly (kernel, initrd, command line, folders shared over 9p): the
guest VM harness (``contrib/guestvm``) starts its apps that way, through this
runtime, so its tests go through evesnap's own snapshot path.
"""

from __future__ import annotations

import contextlib
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
from evesnap_core.process import alive as pid_alive
from evesnap_core.process import cmdline, persist_tag, pids, run
from evesnap_core.qemu.command_line import Drive, GuestBoot, Share, command_line
from evesnap_core.runtime_hookspecs import AppRunState, AppSpec, runtime_hookimpl
from evesnap_core.runtimes.qemu_guest import GuestSettings
from evesnap_core.settings import RUNTIME_DIR_ENV, default_runtime_dir

START_TIMEOUT = 60.0


class _Started(BaseModel):
    """What the runtime remembers of a VM it started."""

    app: UUID
    pid: int
    volumes: list[VolumeHandle]
    qmp: str | None = None
    """evesnap's own monitor (None: a VM of an older evesnap, one monitor only)."""
    guest_agent: str | None = None
    """The host end of the VM's guest-agent channel (None: it has none)."""


class _Intent(BaseModel):
    """Written before QEMU is launched: what the VM about to run holds."""

    app: UUID
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
        self.tag = persist_tag(persist_dir)
        self.accel = accel
        self.memory_mb = memory_mb
        self.guest = GuestSettings.from_env()

    def _socket(self, app: UUID) -> Path:
        sock = self.sockets / f"{self.tag}-{app}.qmp"
        if len(str(sock).encode()) >= 108:
            raise AppRuntimeError(
                f"QMP socket path {sock} is too long for a unix socket; "
                f"set {RUNTIME_DIR_ENV} to a short folder such as /run/evesnap"
            )
        return sock

    def _own_socket(self, app: UUID) -> Path:
        """evesnap's private monitor: in a folder of mode 0700."""
        return self.sockets / "own" / f"{self.tag}-{app}.qmp"

    def _agent_socket(self, app: UUID) -> Path:
        """The host end of the app's guest-agent channel, beside evesnap's own monitor."""
        sock = self.sockets / "own" / f"{self.tag}-{app}.qga"
        if len(str(sock).encode()) >= 108:
            raise AppRuntimeError(f"guest agent socket path {sock} is too long; set {RUNTIME_DIR_ENV}")
        return sock

    def _boot(self, app: UUID) -> GuestBoot | None:
        if self.guest is None or self.guest.kernel is None:
            return None
        return GuestBoot(
            kernel=self.guest.kernel,
            initrd=self.guest.initrd,
            append=self.guest.append,
            cpus=self.guest.cpus,
            shares=tuple(Share(s.tag, s.path, s.readonly) for s in self.guest.shares),
            console=self._dir(app) / "console.log" if self.guest.console else None,
        )

    def _dir(self, app: UUID) -> Path:
        return self.root / str(app)

    def _pidfile(self, app: UUID) -> Path:
        return self._dir(app) / "qemu.pid"

    def _intent(self, app: UUID) -> _Intent | None:
        try:
            return _Intent.model_validate_json((self._dir(app) / "intent.json").read_bytes())
        except (OSError, ValueError):
            return None

    def _ours(self, app: UUID, argv: list[str]) -> bool:
        """`argv` is a QEMU of app `app` started on this persist folder."""
        return (
            bool(argv)
            and Path(argv[0]).name.startswith("qemu-system")
            and f"evesnap-{app}" in argv
            and str(self._pidfile(app)) in argv
        )

    def own_vms(self, app: UUID, volumes: Sequence[VolumeHandle] = ()) -> list[int]:
        """Every running QEMU of `app` on this persist folder, wherever evesnap lost
        track of it: by its pid file, by its name and pid file path on its command
        line, and as the holder of one of `volumes`' images."""
        found: set[int] = set()
        with contextlib.suppress(OSError, ValueError):
            pid = int(self._pidfile(app).read_text().strip())
            if self._ours(app, cmdline(pid)) and pid_alive(pid):
                found.add(pid)
        images = {str(Path(v.location).resolve()) for v in volumes if v.format != "zvol"}
        for pid in pids():
            argv = cmdline(pid)
            if not argv or not Path(argv[0]).name.startswith("qemu-system"):
                continue
            mine = self._ours(app, argv) and pid_alive(pid)
            holder = bool(images) and f"evesnap-{app}" in argv and _holds(pid, images)
            if mine or holder:
                found.add(pid)
        return sorted(found)

    def _kill(self, pid: int, timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # QEMU quits cleanly, flushing its images
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                end = time.monotonic() + 10
                while pid_alive(pid) and time.monotonic() < end:
                    time.sleep(0.02)
                return
            time.sleep(0.02)

    def _adopt(self, app: AppSpec, found: list[int]) -> bool:
        """Adopt the one QEMU an interrupted start left, if it holds exactly the
        volumes asked for now; otherwise stop every one of them."""
        intent = self._intent(app.uuid)
        if len(found) == 1 and intent is not None and intent.volumes == list(app.volumes):
            sock = self._own_socket(app.uuid)
            if self._wait_socket(sock, 5.0):
                agent = self._agent_socket(app.uuid)
                record = _Started(
                    app=app.uuid,
                    pid=found[0],
                    volumes=list(app.volumes),
                    qmp=str(sock),
                    guest_agent=str(agent) if agent.exists() else None,
                )
                atomic_write(self._dir(app.uuid) / "started.json", record.model_dump_json().encode())
                return True
        for pid in found:
            self._kill(pid, 10.0)
        return False

    @staticmethod
    def _wait_socket(sock: Path, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _started(self, app: UUID) -> _Started | None:
        try:
            return _Started.model_validate_json((self._dir(app) / "started.json").read_bytes())
        except (OSError, ValueError):
            return None

    def _alive(self, started: _Started) -> bool:
        argv = cmdline(started.pid)
        return f"evesnap-{started.app}" in argv and pid_alive(started.pid)

    # ------------------------------------------------------------ hooks

    @runtime_hookimpl
    def evesnap_runtime_name(self) -> str:
        return "qemu"

    @runtime_hookimpl
    def evesnap_runtime_start(self, app: AppSpec) -> None:
        started = self._started(app.uuid)
        if started is not None and self._alive(started):
            return
        found = self.own_vms(app.uuid, app.volumes)
        if found and self._adopt(app, found):
            return
        folder = ensure_dir(self._dir(app.uuid))
        ensure_dir(self.sockets)
        own = ensure_dir(self._own_socket(app.uuid).parent)
        own.chmod(0o700)
        sock, mine, pidfile = self._socket(app.uuid), self._own_socket(app.uuid), self._pidfile(app.uuid)
        agent = self._agent_socket(app.uuid) if self.guest is not None and self.guest.guest_agent else None
        console = folder / "console.log"  # one boot's console each
        for stale in (sock, mine, pidfile, self._agent_socket(app.uuid), console):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        intent = _Intent(app=app.uuid, volumes=list(app.volumes))
        atomic_write(folder / "intent.json", intent.model_dump_json().encode())  # before the launch
        guest_memory = self.guest.memory_mb if self.guest is not None else None
        argv = command_line(
            f"evesnap-{app.uuid}",
            accel=self.accel,
            memory_mb=guest_memory or self.memory_mb or app.memory_mb,
            qmp_sockets=(mine, sock),  # evesnap's own first, then the operators'
            pidfile=pidfile,
            drives=[_drive(index, volume) for index, volume in enumerate(app.volumes)],
            guest_agent=agent,
            boot=self._boot(app.uuid),
        )
        try:
            run(argv, timeout=START_TIMEOUT)
        except CommandFailed as exc:
            raise AppRuntimeError(f"app {app.uuid} ({app.name}) failed to start: {exc}") from exc
        pid = int(pidfile.read_text().strip())
        record = _Started(
            app=app.uuid,
            pid=pid,
            volumes=list(app.volumes),
            qmp=str(mine),
            guest_agent=str(agent) if agent is not None else None,
        )
        atomic_write(folder / "started.json", record.model_dump_json().encode())
        # QMP listens before -daemonize returns, but be sure
        if not self._wait_socket(mine, START_TIMEOUT):
            raise AppRuntimeError(f"app {app.uuid}: QMP socket {mine} never appeared")

    @runtime_hookimpl
    def evesnap_runtime_stop(self, app_id: UUID, timeout: float) -> bool:
        started = self._started(app_id)
        intent = self._intent(app_id)
        volumes = intent.volumes if intent is not None else started.volumes if started else []
        pids = set(self.own_vms(app_id, volumes))
        if started is not None and self._alive(started):
            pids.add(started.pid)
        for pid in sorted(pids):
            self._kill(pid, timeout)
        if any(pid_alive(pid) for pid in pids):
            return False
        durable_unlink(self._dir(app_id) / "started.json")  # stopped on purpose: not a crash
        durable_unlink(self._dir(app_id) / "intent.json")
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
        sock = Path(started.qmp) if started.qmp else self._socket(app_id)
        return {
            volume.key: LiveAttachment(
                qmp_socket=sock, node_name=node_name(i), device=guest_device(i), vm=str(app_id)
            )
            for i, volume in enumerate(started.volumes)
        }

    @runtime_hookimpl
    def evesnap_runtime_guest_agent(self, app_id: UUID) -> Path | None:
        started = self._started(app_id)
        if started is None or started.guest_agent is None or not self._alive(started):
            return None
        return Path(started.guest_agent)

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


def _holds(pid: int, images: set[str]) -> bool:
    """Whether process `pid` has one of `images` open (as QEMU holds its disks)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if str(fd.readlink()) in images:
                return True
    return False

"""A resident ``qemu-storage-daemon`` for the offline snapshots of stopped apps' volumes.

Why: every ``qemu-img snapshot`` pays a process start and an image open before
its metadata update (about 7 ms of a 10-20 ms call here). One long-lived
qemu-storage-daemon per evesnap process, reached over QMP, pays neither: an
offline create or delete is ``blockdev-add`` (qcow2 over file, with QEMU's
image locking on), ``blockdev-snapshot-internal-sync`` (several images: one
``transaction``) or ``blockdev-snapshot-delete-internal-sync``, then
``blockdev-del``.

The rules that keep it sound:

- An image is open in the daemon only inside one operation, while the backend
  holds that image's ``flock``: added right before, deleted (flushed, closed,
  its QEMU lock gone) right after. Outside an operation the daemon holds no
  image at all, so an app's QEMU never finds a volume locked by it. (The plugin
  API has no hook that tells a backend an app is about to start, so nothing
  could be released at that moment: nothing is held.) Two writers never meet:
  between evesnap processes the ``flock`` keeps them apart, and against a
  running QEMU its own image lock does (``blockdev-add`` then fails:
  ``VolumeLocked``, as qemu-img would).
- An image the daemon cannot release (``blockdev-del`` refused or unanswered)
  takes the daemon down: its locks go with the process, and the image file is
  flushed from here.
- The daemon is a child started through ``toolkit.run`` by a thread that lives
  exactly as long as it: it gets ``PR_SET_PDEATHSIG`` (killed with evesnap, even
  by SIGKILL, so no half-done step finishes behind a restarted evesnap) and the
  owner mark ``wait_for_orphans`` looks for; it is asked to quit at exit.
- One QMP connection, one command at a time: an operation that finds the
  daemon busy with another goes through qemu-img instead of waiting.
- A daemon that cannot start (missing, refused): said once, then qemu-img for
  the rest of the process. A daemon that dies in an operation: the operation
  gets :class:`DaemonGone` once its process is gone (nothing of it can land
  later) and looks at the images; the next operation starts a new one.

Rollback stays with ``qemu-img snapshot -a``: QMP (QEMU 7.2) has no command
that reverts a disk to an internal snapshot outside a VM (``snapshot-load``
is a qemu-system job that refuses disk-only snapshots, and the daemon does not
have it).

Fault point (``evesnap_core.crashpoints``): ``qcow2.daemon.command``, the images
open in the daemon and a snapshot command about to go. ``EVESNAP_KILL_AT=
qcow2.daemon.command=PID`` kills the daemon there (:attr:`StorageDaemon.pid`),
``EVESNAP_CRASH_AT`` kills evesnap with the images open.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from evesnap_core import EvesnapError
from evesnap_core.toolkit import QmpClient, QmpDisconnected, QmpError, QmpTimeout, crashpoint, run
from evesnap_qcow2 import qemu_img

QSD = "qemu-storage-daemon"
START_TIMEOUT = 10.0
"""How long the daemon may take to listen on its monitor."""
TIMEOUT = qemu_img.TIMEOUT
"""One command's limit, as for a qemu-img call; past it the daemon is killed."""
LIFETIME = 7 * 86400.0
"""``toolkit.run``'s limit on the daemon's life (every call has one)."""
RETIRE_AFTER = 6 * 86400.0
"""An idle daemon this old is replaced before its limit can cut an operation."""
log = logging.getLogger("evesnap.backend.qcow2")


class DaemonGone(EvesnapError):
    """The daemon died during an operation; its process is gone, so nothing it
    was doing can still land. What did land is in the images."""


class _Process:
    """One running daemon: its thread, monitor, pid and private folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "qmp.sock"
        self.pidfile = folder / "pid"
        self.ended = threading.Event()
        self.outcome = ""
        self.owner = os.getpid()
        self.started = time.monotonic()
        self.pid = 0
        self.client: QmpClient | None = None

    def alive(self) -> bool:
        return not self.ended.is_set()


class StorageDaemon:
    """The process's qemu-storage-daemon, started on first use (see the module)."""

    def __init__(self, binary: str = QSD) -> None:
        self.binary = binary
        self._lock = threading.Lock()
        self._proc: _Process | None = None
        self.unavailable = ""
        """Why the daemon cannot run here ('' while it can)."""
        self._nodes = itertools.count()

    # ------------------------------------------------------------ operations

    def snapshot(self, targets: Sequence[tuple[Path, str]]) -> bool:
        """Make internal snapshot `tag` in each `image` of `targets`, all in one QMP
        transaction (QEMU applies all or none). False when the daemon cannot
        serve (not available, or busy): nothing was done, use qemu-img."""
        with self._session() as proc:
            if proc is None:
                return False
            images = [image for image, _ in targets]
            nodes = self._open(proc, images)
            try:
                crashpoint("qcow2.daemon.command")
                each = [{"device": node, "name": tag} for node, (_, tag) in zip(nodes, targets, strict=True)]
                if len(each) == 1:
                    self._command(proc, "blockdev-snapshot-internal-sync", each[0], images, nodes)
                else:
                    actions = [{"type": "blockdev-snapshot-internal-sync", "data": d} for d in each]
                    self._command(proc, "transaction", {"actions": actions}, images, nodes)
            finally:
                self._release(proc, nodes, images)
            return True

    def delete(self, image: Path, tag: str) -> bool:
        """Delete internal snapshot `tag` of `image`; False as for :meth:`snapshot`."""
        with self._session() as proc:
            if proc is None:
                return False
            nodes = self._open(proc, [image])
            try:
                crashpoint("qcow2.daemon.command")
                self._command(
                    proc,
                    "blockdev-snapshot-delete-internal-sync",
                    {"device": nodes[0], "name": tag},
                    [image],
                    nodes,
                    what=tag,
                )
            finally:
                self._release(proc, nodes, [image])
            return True

    @property
    def pid(self) -> int | None:
        """The running daemon's pid (None before the first operation or after it ended)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.alive() else None

    def resident_bytes(self) -> int | None:
        """The running daemon's resident memory (VmRSS), for the benchmark."""
        pid = self.pid
        if pid is None:
            return None
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return None

    def start(self) -> bool:
        """Start the daemon now rather than at the first operation; whether it runs."""
        with self._session() as proc:
            return proc is not None

    def stop(self) -> None:
        """Ask the daemon to quit (killed if it does not); the next operation
        starts a new one. At exit, and for tests."""
        got = self._lock.acquire(timeout=5)
        try:
            proc, self._proc = self._proc, None
            if proc is not None and proc.owner == os.getpid():
                self._end(proc, polite=True)
        finally:
            if got:
                self._lock.release()

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _session(self) -> Iterator[_Process | None]:
        if self.unavailable or not self._lock.acquire(blocking=False):
            yield None
            return
        try:
            yield self._ready()
        finally:
            self._lock.release()

    def _ready(self) -> _Process | None:
        proc = self._proc
        if proc is not None and proc.owner != os.getpid():  # a forked child: not ours to use
            proc = self._proc = None
        if proc is not None and (not proc.alive() or time.monotonic() - proc.started > RETIRE_AFTER):
            self._end(proc, polite=proc.alive())
            proc = self._proc = None
        if proc is None:
            try:
                proc = self._proc = self._start()
            except EvesnapError as exc:
                self.unavailable = str(exc)
                log.warning("qemu-storage-daemon cannot run (%s): offline snapshots use qemu-img", exc)
                return None
        return proc

    def _start(self) -> _Process:
        folder = Path(tempfile.mkdtemp(prefix="evesnap-qsd-"))  # 0700: the monitor opens any file
        proc = _Process(folder)
        chardev = f"socket,id=qmp,path={str(proc.socket).replace(',', ',,')},server=on,wait=off"
        argv = [self.binary, "--chardev", chardev, "--monitor", "chardev=qmp", "--pidfile", str(proc.pidfile)]

        def serve() -> None:  # this thread's life is the daemon's (PDEATHSIG follows the thread)
            try:
                result = run(argv, timeout=LIFETIME, check=False)
                stderr = result.stderr.decode(errors="replace").strip()
                proc.outcome = f"exit status {result.returncode}" + (f": {stderr}" if stderr else "")
            except BaseException as exc:  # not installed, or its life's limit reached
                proc.outcome = str(exc) or type(exc).__name__
            finally:
                proc.ended.set()

        threading.Thread(target=serve, name="evesnap-qemu-storage-daemon", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not (proc.socket.exists() and proc.pidfile.exists()):
                if proc.ended.wait(0.002):
                    raise EvesnapError(f"{self.binary} did not start: {proc.outcome}")
                if time.monotonic() > deadline:
                    raise EvesnapError(f"{self.binary} did not listen within {START_TIMEOUT:g} s")
            pid = ""
            while not pid.strip().isdigit() and time.monotonic() < deadline:  # written, maybe not yet whole
                pid = proc.pidfile.read_text()
            proc.pid = int(pid) if pid.strip().isdigit() else 0
            proc.client = QmpClient(proc.socket, command_timeout=TIMEOUT)
            try:
                proc.client.connect()
            except QmpError as exc:
                raise EvesnapError(f"{self.binary}'s monitor: {exc}") from exc
        except BaseException:
            self._end(proc, polite=False)
            raise
        _stop_at_exit(self)
        return proc

    def _open(self, proc: _Process, images: Sequence[Path]) -> list[str]:
        nodes: list[str] = []
        try:
            for image in images:
                node = f"evesnap{next(self._nodes)}"
                options = {
                    "driver": "qcow2",
                    "node-name": node,
                    "file": {"driver": "file", "filename": str(image.absolute()), "locking": "on"},
                }
                self._command(proc, "blockdev-add", options, [image], [node])
                nodes.append(node)
        except BaseException:
            self._release(proc, nodes, images)
            raise
        return nodes

    def _release(self, proc: _Process, nodes: Sequence[str], images: Sequence[Path]) -> None:
        """Close `nodes` in the daemon. One it cannot close takes the daemon down
        (its image lock with it), the images are flushed from here, and
        DaemonGone says so: what the daemon still cached (qcow2 keeps its
        refcount and L2 tables in memory until the close) is lost, so the caller
        looks at the images. A daemon already gone was reported by the command."""
        if not proc.alive() or proc.client is None:
            return
        for node in reversed(nodes):
            try:
                proc.client.command("blockdev-del", {"node-name": node})
            except QmpError as exc:
                self._end(proc, polite=False)
                for image in images:
                    _flush(image)
                raise DaemonGone(
                    f"qemu-storage-daemon could not release {node} ({exc.detail}): stopped it"
                ) from exc

    def _command(
        self,
        proc: _Process,
        name: str,
        arguments: Mapping[str, Any],
        images: Sequence[Path],
        nodes: Sequence[str],
        what: str = "",
    ) -> Any:
        assert proc.client is not None
        try:
            return proc.client.command(name, arguments)
        except QmpDisconnected as exc:
            self._end(proc, polite=False)
            for image in images:
                _flush(image)
            raise DaemonGone(f"qemu-storage-daemon died during {name}: {proc.outcome or exc.detail}") from exc
        except QmpTimeout:
            self._end(proc, polite=False)  # a step that outlived its limit must not finish later
            for image in images:
                _flush(image)
            raise
        except QmpError as exc:
            named = (i for i, n in zip(images, nodes, strict=False) if f"'{n}'" in exc.detail)
            image = next(named, images[0])  # the image the error names, in a transaction
            raise qemu_img.typed(exc.detail, image, what) or exc from exc

    def _end(self, proc: _Process, polite: bool) -> None:
        """Stop `proc` and wait until its process is gone; its folder removed."""
        if proc.alive() and polite and proc.client is not None:
            with contextlib.suppress(QmpError):
                proc.client.command("quit", timeout=5)
            proc.ended.wait(5)
        if proc.alive() and proc.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.ended.wait(10)  # set once run() has reaped it
        if proc.client is not None:
            proc.client.close()
        shutil.rmtree(proc.folder, ignore_errors=True)


def _flush(image: Path) -> None:
    """fsync `image`: what a daemon killed before its close wrote is then durable."""
    with contextlib.suppress(OSError):
        fd = os.open(image, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_registered: set[int] = set()


def _stop_at_exit(daemon: StorageDaemon) -> None:
    if id(daemon) not in _registered:
        _registered.add(id(daemon))
        atexit.register(daemon.stop)


_shared: StorageDaemon | None = None
_shared_lock = threading.Lock()


def shared() -> StorageDaemon:
    """The one daemon of this process, for every qcow2 backend in it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = StorageDaemon()
        return _shared

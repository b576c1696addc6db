"""What a backend author supplies so that the conformance suite can drive a backend.

The suite never trusts the backend to check itself: it writes and reads volume
bytes through the harness (qemu-io, plain file I/O, O_DIRECT on a device), and
loads the backend the way the agent does, through its entry point.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from evesnap_core.backend import Backend
from evesnap_core.discovery import load_backends
from evesnap_core.handler_types import LiveAttachment, ReadOnlyExport, VolumeHandle, VolumeSpec
from evesnap_core.process import run
from evesnap_core.qemu import QmpClient
from evesnap_core.testing.conformance.requirements import Requirements
from evesnap_core.testing.qemu_vm import Disk, QemuProcess

MIB = 1024 * 1024
MAX_SOCKET_PATH = 107
"""A Unix socket path (sun_path) holds 108 bytes with its terminating NUL."""
SOCKET_NAME_BUDGET = 64
"""The longest socket file name a backend or the VM harness puts in the runtime folder."""


def short_runtime_dir(preferred: Path) -> Path:
    """A new private folder for sockets whose paths stay under the 107-byte limit
    whatever TMPDIR (or the test's folder) is: `preferred` when it is short
    enough, else the system's temporary folder, else /tmp, else /run."""
    fallbacks = (Path(tempfile.gettempdir()), Path("/tmp"), Path("/run"))  # noqa: S108 (mkdtemp: private)
    for base in (preferred.parent, *fallbacks):
        if len(os.fsencode(base)) + 1 + 16 + SOCKET_NAME_BUDGET > MAX_SOCKET_PATH:
            continue
        with contextlib.suppress(OSError):
            base.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="evesnap-rt-", dir=base))
    raise RuntimeError(f"no folder short enough for unix sockets (tried {preferred}, TMPDIR, /tmp, /run)")


class Harness:
    """Subclass this for your backend; override the abstract I/O methods.

    One harness object serves one test: `workdir` is that test's own folder.
    `requirements` says what the harness provides beyond the backend (every
    requirement by default; a case needing one it does not provide is skipped,
    naming it).
    """

    backend_name: ClassVar[str] = ""
    volume_format: ClassVar[str] = ""
    volume_size: ClassVar[int] = 8 * MIB
    requirements: ClassVar[type[Requirements]] = Requirements

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.persist = workdir / "persist"
        self.persist.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runtime_dir = short_runtime_dir(workdir / "run")
        self._vms: list[QemuProcess] = []

    # ------------------------------------------------------------ the backend

    def environ(self) -> Mapping[str, str]:
        """Environment the backend's options are read from (EVESNAP_<NAME>_<KEY>)."""
        return {k: v for k, v in os.environ.items() if not k.startswith("EVESNAP_BLOCK")}

    def load(self) -> Backend:
        """A NEW backend object, loaded through its entry point, as the agent loads it."""
        registry = load_backends(self.persist, environ=self.environ())
        return registry.get(self.backend_name)

    def volume_spec(self, size: int | None = None, generation: int = 0) -> VolumeSpec:
        return VolumeSpec(
            uuid=uuid.uuid4(),
            generation=generation,
            format=self.volume_format,
            size_bytes=size or self.volume_size,
            backend=self.backend_name,
        )

    def new_volume(self, backend: Backend, size: int | None = None) -> VolumeHandle:
        """A fresh, empty volume of this backend's kind."""
        return backend.create_volume(self.volume_spec(size))

    # ------------------------------------------------------------ bytes, outside the backend

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        """Write `data` into the volume without going through the backend's hooks."""
        raise NotImplementedError

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        """Read the volume's bytes without going through the backend's hooks."""
        raise NotImplementedError

    def read_export(self, export: ReadOnlyExport, offset: int, length: int) -> bytes:
        """Read through a read-only export with standard tools."""
        if export.kind == "path" and export.format == "raw":
            with open(export.path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        return qemu_io_read(_export_target(export), export.format, offset, length)

    def write_export(self, export: ReadOnlyExport, offset: int, data: bytes) -> None:
        """Try to write through an export; must raise because exports are read-only."""
        if export.kind == "path":
            with open(export.path, "r+b") as f:
                f.seek(offset)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return
        qemu_io_write(_export_target(export), export.format, offset, data)

    # ------------------------------------------------------------ what the backend leaves

    def backend_roots(self) -> list[Path]:
        """The folders the backend keeps its files in (default: the persist folder)."""
        return [self.persist]

    def backend_files(self) -> set[str]:
        """Every file and symlink under :meth:`backend_roots` (folders do not count:
        an empty folder holds nothing), for the cases that prove nothing is left."""
        found: set[str] = set()
        for root in self.backend_roots():
            if root.is_dir():
                found |= {str(p) for p in root.rglob("*") if p.is_symlink() or not p.is_dir()}
        return found

    def backend_file_sizes(self) -> dict[str, int]:
        """Bytes each file of :meth:`backend_files` occupies on disk."""
        sizes = {}
        for name in self.backend_files():
            with contextlib.suppress(OSError):
                sizes[name] = os.lstat(name).st_blocks * 512
        return sizes

    def backend_processes(self) -> list[str]:
        """Processes still running whose command line names this test's persist
        or runtime folder (a qemu-nbd, a qemu-storage-daemon the backend started),
        excluding the VMs the harness itself holds volumes with."""
        marks = [str(self.persist), str(self.runtime_dir)]
        ours = {vm.pid for vm in self._vms if vm.alive()}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in ours or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(mark in cmdline for mark in marks):
                found.append(f"{entry.name}: {cmdline.strip()[:200]}")
        return found

    # ------------------------------------------------------------ a new process

    def listing_in_new_process(self, volume: VolumeHandle) -> list[tuple[str, str | None]]:
        """(id, parent) of the volume's snapshots as a backend object in a NEW
        Python process lists them: this harness class, rebuilt there around the
        same folders, loads the backend as the agent does (module-level state of
        this process cannot help it)."""
        cls = next(c for c in type(self).__mro__ if _importable(c))
        payload = {
            "module": cls.__module__,
            "qualname": cls.__qualname__,
            "state": {"workdir": str(self.workdir), "persist": str(self.persist)},
            "volume": volume.model_dump(mode="json"),
        }
        out = run(
            [sys.executable, "-c", _NEW_PROCESS_LISTING, json.dumps(payload)],
            timeout=300,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        return [(row[0], row[1]) for row in json.loads(out.stdout.decode().strip().splitlines()[-1])]

    # ------------------------------------------------------------ a small filesystem

    small_filesystem_kind: ClassVar[str] = "ext4"
    small_filesystem_size: ClassVar[int] = 32 * MIB

    @contextlib.contextmanager
    def on_small_filesystem(self) -> Iterator[Harness | None]:
        """This harness's kind, with the backend's persist folder on a new small
        loop filesystem (``small_filesystem_kind``/``_size``), for the NoSpace
        cases; None where this process cannot attach loop devices or the backend
        does not keep its data under the persist folder (override then)."""
        from evesnap_core.testing.loopfs import loop_filesystem, loop_unavailable_reason

        kind = self.small_filesystem_kind
        if loop_unavailable_reason(kind) is not None:  # type: ignore[arg-type]
            yield None
            return
        with loop_filesystem(kind, self.small_filesystem_size, self.workdir) as mount:  # type: ignore[arg-type]
            small = type(self)(mount / "w")
            small.persist = mount / "persist"  # wherever the class would put it
            small.persist.mkdir(mode=0o700, exist_ok=True)
            try:
                yield small
            finally:
                small.cleanup()

    def free_bytes(self) -> int:
        """What an unprivileged writer may still use where the persist folder is."""
        stat = os.statvfs(self.persist)
        return stat.f_bavail * stat.f_frsize

    # ------------------------------------------------------------ optional

    def vm_disk(self, volume: VolumeHandle, index: int) -> Disk:
        """How the VM harness attaches `volume`: its location as a file or block
        device, in its own format (raw for anything qemu has no driver for)."""
        fmt = "qcow2" if volume.format == "qcow2" else "raw"
        return Disk(path=Path(volume.location), node_name=f"n{index}", format=fmt)

    @contextlib.contextmanager
    def attached(self, volumes: Sequence[VolumeHandle]) -> Iterator[list[VolumeHandle]]:
        """Hold `volumes` in a running QEMU without a guest OS (as the app runtime
        does: the volumes open read-write, QMP on a socket) and yield their
        attached handles. The QEMU is stopped and its sockets removed on the way
        out, whatever happens."""
        vm = QemuProcess([self.vm_disk(v, i) for i, v in enumerate(volumes)], self.runtime_dir)
        self._vms.append(vm)
        with vm:
            yield [
                v.attached(
                    LiveAttachment(
                        qmp_socket=vm.control_socket, node_name=f"n{i}", device=_guest_device(i), vm=vm.name
                    )
                )
                for i, v in enumerate(volumes)
            ]

    def write_attached(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        """Write into a volume a running VM holds, through the guest's device as a
        guest would write (HMP qemu-io), then flush."""
        held = volume.attachment
        assert held is not None and held.device, "the VM harness names the guest device"
        with QmpClient(held.qmp_socket) as qmp:
            for start, value, length in byte_runs(data):
                qmp.hmp(f'qemu-io -d {held.device} "write -P {value} {offset + start} {length}"')
            qmp.hmp(f'qemu-io -d {held.device} "flush"')

    def cleanup(self) -> None:
        """Release whatever the harness made outside `workdir` (subclasses that
        override this call it too): VMs still running, the runtime folder."""
        for vm in self._vms:
            vm.stop()
        for leftover in self.backend_processes():  # a backend's leak never outlives the case
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(leftover.split(":", 1)[0]), signal.SIGKILL)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def _importable(cls: type) -> bool:
    """Whether `cls` can be found again by module and qualified name (a class
    made with type() at run time, say by ``ReflinkHarness.on``, cannot)."""
    module = sys.modules.get(cls.__module__)
    target: object = module
    for part in cls.__qualname__.split("."):
        target = getattr(target, part, None)
    return target is cls and issubclass(cls, Harness)


_NEW_PROCESS_LISTING = """
import importlib, json, sys
payload = json.loads(sys.argv[1])
from pathlib import Path
from evesnap_core.handler_types import VolumeHandle
target = importlib.import_module(payload["module"])
for part in payload["qualname"].split("."):
    target = getattr(target, part)
harness = target.__new__(target)
harness.workdir = Path(payload["state"]["workdir"])
harness.persist = Path(payload["state"]["persist"])
harness.runtime_dir = harness.workdir
harness._vms = []
backend = harness.load()
volume = VolumeHandle.model_validate(payload["volume"])
print(json.dumps([[i.snapshot_id, i.parent] for i in backend.list_snapshots(volume)]))
"""


def _guest_device(index: int) -> str:
    """The qdev path of the block device a guest writes through (``qemu-io -d``)
    for the `index`-th disk of a :class:`QemuProcess`."""
    return f"/machine/peripheral/disk{index}/virtio-backend"


def _export_target(export: ReadOnlyExport) -> str:
    if export.kind == "nbd":
        return export.uri or f"nbd+unix:///?socket={export.path}"
    return str(export.path)


def _qemu_io_args(target: str, fmt: str, read_only: bool) -> list[str]:
    args = ["qemu-io"]
    if read_only:
        args.append("-r")
    if target.startswith("nbd"):
        return [*args, "-f", "raw", target]
    return [*args, "-f", fmt, str(Path(target).resolve())]


def qemu_io_read(target: str, fmt: str, offset: int, length: int) -> bytes:
    """Read bytes of an image (any format qemu knows, or an NBD uri) with qemu's own
    tools: the image is converted to a raw temporary file and the range sliced out.
    (``qemu-img dd`` would be cheaper, but its ``count`` changed meaning between
    QEMU versions.)"""
    is_nbd = target.startswith("nbd")
    source = target if is_nbd else str(Path(target).resolve())
    with tempfile.TemporaryDirectory(prefix="evesnap-read-") as tmp:
        out = Path(tmp) / "image.raw"
        run(
            ["qemu-img", "convert", "-U", "-f", "raw" if is_nbd else fmt, "-O", "raw", source, str(out)],
            timeout=300,
        )
        with open(out, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    if len(data) != length:
        raise AssertionError(f"read {len(data)} bytes at {offset} from {target}, wanted {length}")
    return data


def qemu_io_write(target: str, fmt: str, offset: int, data: bytes) -> None:
    """Write `data` at `offset` with qemu-io (from a temporary file, any bytes)."""
    args = _qemu_io_args(target, fmt, read_only=False)
    # qemu-io writes patterns, not arbitrary bytes: write byte runs pattern by pattern
    for start, value, length in byte_runs(data):
        run([*args, "-c", f"write -P {value} {offset + start} {length}"], timeout=120)


def byte_runs(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(start, byte value, length) runs of equal bytes."""
    i = 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i]:
            j += 1
        yield i, data[i], j - i
        i = j


def pattern(seed: int, length: int) -> bytes:
    """Bytes made of a few long runs: cheap to write with qemu-io, easy to tell apart."""
    runs = 4
    chunk = max(1, length // runs)
    out = bytearray()
    for k in range(runs):
        value = (seed * 37 + k * 11 + 1) % 251 + 1
        out.extend(bytes([value]) * (chunk if k < runs - 1 else length - chunk * (runs - 1)))
    return bytes(out)


def first_difference(a: bytes, b: bytes) -> str:
    """Where two byte strings first differ, for assertion messages."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at offset {i}: {x:#04x} != {y:#04x}"
    if len(a) != len(b):
        return f"lengths differ: {len(a)} != {len(b)}"
    return "identical"

"""The offline path through the resident qemu-storage-daemon, on real images.

What it must prove: create and delete really go through the daemon (an app's
volumes in one transaction); the daemon holds no image between operations, so
an app's QEMU starts right after it worked on its volumes; a daemon killed in
an operation, or an evesnap killed with the images open in it, leaves images
whose tables and sidecars agree (no snapshot the records do not know) and no
image lock behind; a daemon that cannot run is said once and qemu-img serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from evesnap_core import LiveAttachment, VolumeHandle, VolumeLocked, VolumeSpec
from evesnap_core.testing.conformance import Backend, load_backends
from evesnap_core.toolkit import crashpoint
from evesnap_qcow2 import daemon, header, qemu_img, sidecar
from evesnap_qcow2.backend import Qcow2Backend

from .test_qcow2_backend import MIB, vm

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", daemon.QSD], capture_output=True).returncode != 0,
    reason="qemu-storage-daemon is not installed",
)


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    return load_backends(tmp_path, environ={}).get("qcow2")


def plugin(backend: Backend) -> Qcow2Backend:
    found = backend.pm.get_plugin("qcow2")
    assert isinstance(found, Qcow2Backend)
    return found


def the_daemon(backend: Backend) -> daemon.StorageDaemon:
    found = plugin(backend).daemon
    assert found is not None
    return found


def volumes(backend: Backend, count: int, size: int = 8 * MIB) -> list[VolumeHandle]:
    return [
        backend.create_volume(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=size, backend="qcow2"))
        for _ in range(count)
    ]


def table(handle: VolumeHandle) -> set[str]:
    return {e.name for e in header.read_snapshot_table(Path(handle.location))}


def recorded(handle: VolumeHandle) -> set[str]:
    return set(sidecar.load(Path(handle.location)).tags)


def check_clean(handle: VolumeHandle) -> None:
    out = subprocess.run(
        ["qemu-img", "check", "--output=json", "--image-opts", qemu_img.image_opts(Path(handle.location))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr  # 0: no corruption, no leak


def agree(handle: VolumeHandle) -> None:
    """The image's table and its sidecar name the same snapshots, after the
    settling every operation does (a record of a tag never made is dropped)."""
    assert recorded(handle) == table(handle), f"sidecar {recorded(handle)} but table {table(handle)}"


class Spy:
    """The QMP commands the daemon is sent (the real daemon answers them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[str, Any]] = []
        real = daemon.StorageDaemon._command
        spy = self

        def command(
            self: daemon.StorageDaemon, proc: Any, name: str, arguments: Any, *rest: Any, **kw: Any
        ) -> Any:
            spy.sent.append((name, arguments))
            return real(self, proc, name, arguments, *rest, **kw)

        monkeypatch.setattr(daemon.StorageDaemon, "_command", command)

    def names(self) -> list[str]:
        return [n for n, _ in self.sent]


def no_qemu_img_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError(f"qemu-img snapshot {args} was called: the daemon was to do it")

    monkeypatch.setattr(qemu_img, "snapshot", refuse)


def test_a_group_is_one_transaction_and_delete_goes_to_the_daemon(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    handles = volumes(backend, 3)
    spy = Spy(monkeypatch)
    no_qemu_img_snapshot(monkeypatch)
    infos = backend.snapshot_group(handles, "s1")
    assert spy.names() == ["blockdev-add"] * 3 + ["transaction"]
    actions = spy.sent[-1][1]["actions"]
    assert [a["data"]["name"] for a in actions] == [i.name for i in infos]
    for handle, info in zip(handles, infos, strict=True):
        assert table(handle) == {info.name} == recorded(handle)
        check_clean(handle)
    spy.sent.clear()
    backend.delete_snapshot(handles[0], "s1")
    assert spy.names() == ["blockdev-add", "blockdev-snapshot-delete-internal-sync"]
    assert table(handles[0]) == set() == recorded(handles[0])
    check_clean(handles[0])
    pid = the_daemon(backend).pid
    assert pid is not None and os.path.exists(f"/proc/{pid}")


def test_the_daemon_holds_no_image_between_operations(tmp_path: Path, backend: Backend) -> None:
    """An app starts right after the daemon worked on its volumes, and its own
    QEMU then takes a live snapshot of them: nothing of the daemon's stays open."""
    handles = volumes(backend, 2)
    backend.snapshot_group(handles, "offline-1")
    backend.delete_snapshot(handles[1], "offline-1")
    own = the_daemon(backend)
    assert own.pid is not None
    assert own._proc is not None and own._proc.client is not None
    assert own._proc.client.command("query-named-block-nodes") == []
    images = [Path(h.location) for h in handles]
    with vm(tmp_path, images) as (sock, _):
        live = [
            h.attached(LiveAttachment(qmp_socket=sock, node_name=f"vol{i}")) for i, h in enumerate(handles)
        ]
        backend.snapshot_group(live, "live-1")
        # while the app runs, the daemon is refused like qemu-img: QEMU's lock keeps a second writer out
        with pytest.raises(VolumeLocked):
            backend.snapshot(handles[0], "offline-while-held")
        assert "offline-while-held" not in {r.snapshot_id for r in sidecar.load(images[0]).tags.values()}
    assert {i.snapshot_id for i in backend.list_snapshots(handles[0])} == {"offline-1", "live-1"}


@pytest.mark.parametrize("operation", ["create", "delete"])
def test_a_daemon_killed_before_its_command_hands_over_to_qemu_img(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    handles = volumes(backend, 2)
    own = the_daemon(backend)
    assert own.start()
    first = own.pid
    if operation == "delete":
        backend.snapshot_group(handles, "s1")
    real = crashpoint

    def kill_there(name: str) -> None:  # EVESNAP_KILL_AT's kill, once per test (it fires once per process)
        if name == "qcow2.daemon.command" and first is not None and not zombie(first):
            os.kill(first, signal.SIGKILL)
            while not zombie(first):
                time.sleep(0.005)
        real(name)

    monkeypatch.setattr(daemon, "crashpoint", kill_there)
    if operation == "create":
        backend.snapshot_group(handles, "s1")
        expected = {"s1"}
    else:
        backend.delete_snapshot(handles[0], "s1")
        expected = set()
    assert zombie(first)
    assert {i.snapshot_id for i in backend.list_snapshots(handles[0])} == expected
    for handle in handles:
        agree(handle)
        check_clean(handle)
    backend.snapshot_group(handles, "s2")  # a new daemon serves the next operation
    assert own.pid not in (None, first)


def zombie(pid: int | None) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_a_daemon_killed_in_the_middle_of_its_work_converges(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL at a moment nobody chose, while the daemon writes (a delete that
    gives back 96 MiB of changed clusters, a create on a busy image): whatever
    the outcome of each call, the table and the sidecar agree afterwards and the
    image has no corruption; what the kill cut short is given back (no leak)."""
    [handle] = volumes(backend, 1, 256 * MIB)
    image = Path(handle.location)
    own = the_daemon(backend)
    outcomes: list[str] = []
    for rep in range(6):
        io = ["qemu-io", "-f", "qcow2", "-c", f"write -P {rep + 1} 0 96M", str(image)]
        subprocess.run(io, check=True, capture_output=True)
        backend.snapshot(handle, f"base-{rep}")
        subprocess.run([*io[:4], f"write -P {rep + 100} 0 96M", str(image)], check=True, capture_output=True)
        assert own.start()
        pid = own.pid
        assert pid is not None
        killer = threading.Timer(0.001 + rep * 0.004, lambda p=pid: os.kill(p, signal.SIGKILL))
        killer.start()
        try:
            if rep % 2:
                backend.snapshot(handle, f"more-{rep}")
            else:
                backend.delete_snapshot(handle, f"base-{rep}")
            outcomes.append("done")
        except Exception as exc:  # a typed error is fine; disagreement is not
            outcomes.append(type(exc).__name__)
        finally:
            killer.join()
        agree(handle)
        try:
            check_clean(handle)
        except AssertionError:
            print("REP", rep, outcomes, [r.getMessage() for r in caplog.records])
            raise
    assert all(o == "done" for o in outcomes), outcomes  # qemu-img finished what the daemon could not


CHILD = """
import sys, uuid
from pathlib import Path
from evesnap_core import VolumeHandle
from evesnap_core.testing.conformance import load_backends
from evesnap_qcow2 import daemon
backend = load_backends(Path(sys.argv[1]), environ={}).get("qcow2")
handles = [VolumeHandle.model_validate_json(line) for line in sys.argv[2:]]
backend.pm.get_plugin("qcow2").daemon.start()
print(backend.pm.get_plugin("qcow2").daemon.pid, flush=True)
backend.snapshot_group(handles, "doomed")
"""


def test_evesnap_killed_with_images_open_in_the_daemon(tmp_path: Path, backend: Backend) -> None:
    """The daemon dies with evesnap (PDEATHSIG): no image stays locked, the app's
    QEMU can take its volumes, and the next evesnap drops the record of the
    snapshot that was never made."""
    handles = volumes(backend, 2)
    backend.snapshot_group(handles, "kept")
    env = dict(os.environ, EVESNAP_CRASH_AT="qcow2.daemon.command")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), *(h.model_dump_json() for h in handles)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == -9, out.stderr
    child_daemon = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not zombie(child_daemon) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert zombie(child_daemon), "the daemon outlived the evesnap that started it"
    for handle in handles:  # recorded before the attempt, never made
        assert "doomed" in {r.snapshot_id for r in sidecar.load(Path(handle.location)).tags.values()}
        subprocess.run(  # no lock left: a writer gets the image at once
            ["qemu-img", "snapshot", "-l", "--image-opts", qemu_img.image_opts(Path(handle.location))],
            check=True,
            capture_output=True,
        )
    backend.snapshot_group(handles, "next")  # a new process's first operation settles the records
    for handle in handles:
        assert {i.snapshot_id for i in backend.list_snapshots(handle)} == {"kept", "next"}
        agree(handle)
        check_clean(handle)


def test_a_daemon_that_cannot_run_is_said_once_and_qemu_img_serves(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    missing = daemon.StorageDaemon(binary="/nonexistent/qemu-storage-daemon")
    plugin(backend).daemon = missing
    handles = volumes(backend, 2)
    with caplog.at_level("WARNING"):
        backend.snapshot_group(handles, "s1")
        backend.snapshot_group(handles, "s2")
        backend.delete_snapshot(handles[0], "s1")
    said = [r.getMessage() for r in caplog.records if "qemu-storage-daemon cannot run" in r.getMessage()]
    assert len(said) == 1, said
    assert missing.unavailable and missing.pid is None
    assert {i.snapshot_id for i in backend.list_snapshots(handles[0])} == {"s2"}
    assert {i.snapshot_id for i in backend.list_snapshots(handles[1])} == {"s1", "s2"}


def test_the_daemon_can_be_turned_off(tmp_path: Path) -> None:
    off = load_backends(tmp_path, environ={"EVESNAP_QCOW2_DAEMON": "off"}).get("qcow2")
    assert plugin(off).daemon is None
    [handle] = volumes(off, 1)
    off.snapshot(handle, "s1")
    assert recorded(handle) == table(handle) != set()


def test_the_daemon_is_our_child_and_stop_leaves_nothing() -> None:
    own = daemon.StorageDaemon()
    assert own.start()
    pid, proc = own.pid, own._proc
    assert pid is not None and proc is not None
    assert f"PPid:\t{os.getpid()}\n" in Path(f"/proc/{pid}/status").read_text()
    assert (own.resident_bytes() or 0) > 1 * MIB
    own.stop()
    assert zombie(pid) and not proc.folder.exists() and own.pid is None

"""QmpClient and QemuProcess against a real qemu-system (TCG, no guest OS).

Data is checked from outside QEMU with qemu-io/qemu-img, never through the
client under test.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.errors import AppRuntimeError
from evesnap_core.qemu import QmpClient, QmpError, QmpTimeout
from evesnap_core.testing.qemu_vm import Disk, QemuProcess

pytestmark = pytest.mark.qemu


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short folder for QMP sockets (a socket path must stay under 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="esq-", dir="/tmp") as folder:
        yield Path(folder)


def image(path: Path, size: str = "8M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def outside_read_matches(path: Path, pattern: int, offset: int, length: int) -> bool:
    """Read `path` with qemu-io (force-share, read-only), as a third party would."""
    result = subprocess.run(
        ["qemu-io", "-U", "-r", "-f", "qcow2", "-c", f"read -P {pattern} {offset} {length}", str(path)],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0 and "verification failed" not in result.stdout


def running(pid: int | None) -> bool:
    """Whether `pid` is a live process (a zombie waiting for init to reap it is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def vm(tmp_path: Path, run_dir: Path) -> Iterator[QemuProcess]:
    disks = [
        Disk(path=image(tmp_path / "a,with comma.qcow2"), node_name="vol0"),
        Disk(path=image(tmp_path / "b.qcow2"), node_name="vol1"),
    ]
    with QemuProcess(disks, run_dir) as process:
        yield process


def test_vm_runs_holds_its_images_and_stops_without_leaving_anything(vm: QemuProcess) -> None:
    assert vm.alive()
    with vm.client() as qmp:
        assert qmp.query_status().running
        nodes = {n["node-name"] for n in qmp.command("query-named-block-nodes")}
    assert {"vol0", "vol1"} <= nodes
    locked = subprocess.run(
        ["qemu-img", "snapshot", "-c", "x", str(vm.disks[1].path)], capture_output=True, text=True
    )
    assert locked.returncode == 1 and 'Failed to get "write" lock' in locked.stderr
    pid = vm.pid
    vm.stop()
    assert not vm.alive() and not running(pid)
    assert not vm.control_socket.exists() and not vm.watch_socket.exists()
    vm.stop()  # idempotent


def test_qemu_io_write_lands_in_the_image(vm: QemuProcess) -> None:
    disk = vm.disks[0]
    assert not outside_read_matches(disk.path, 0xAB, 0, 65536)
    with vm.client() as qmp:
        qmp.qemu_io("vol0", "write -P 0xab 0 64k")
        qmp.qemu_io("vol0", "flush")
    assert outside_read_matches(disk.path, 0xAB, 0, 65536)
    assert not outside_read_matches(vm.disks[1].path, 0xAB, 0, 65536)


def test_qemu_io_on_an_unknown_node_is_an_error(vm: QemuProcess) -> None:
    with vm.client() as qmp, pytest.raises(QmpError, match="no-such-node"):
        qmp.qemu_io("no-such-node", "write 0 4k")


def test_transaction_snapshots_both_disks_and_never_pauses_the_guest(vm: QemuProcess) -> None:
    with vm.watcher() as watch, vm.client() as qmp:
        qmp.transaction(
            [
                {"type": "blockdev-snapshot-internal-sync", "data": {"device": node, "name": "t1"}}
                for node in ("vol0", "vol1")
            ]
        )
        assert watch.event_names() == []
        assert watch.query_status().status == "running"
        # the watcher does see a pause when there is one
        qmp.command("stop")
        qmp.command("cont")
        assert watch.event_names() == ["STOP", "RESUME"]
    for disk in vm.disks:
        listing = subprocess.run(
            ["qemu-img", "snapshot", "-U", "-l", str(disk.path)], capture_output=True, text=True, check=True
        ).stdout
        assert " t1 " in listing


def test_failed_transaction_changes_nothing_and_keeps_qemus_text(vm: QemuProcess) -> None:
    with vm.client() as qmp, pytest.raises(QmpError, match="nope") as caught:
        qmp.transaction(
            [
                {"type": "blockdev-snapshot-internal-sync", "data": {"device": "vol0", "name": "t2"}},
                {"type": "blockdev-snapshot-internal-sync", "data": {"device": "nope", "name": "t2"}},
            ]
        )
    assert "GenericError" in str(caught.value)
    listing = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", str(vm.disks[0].path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "t2" not in listing


def test_a_busy_monitor_times_out_instead_of_hanging(vm: QemuProcess) -> None:
    with vm.client():
        started = time.monotonic()
        with pytest.raises(QmpTimeout, match="connect"):
            QmpClient(vm.control_socket, connect_timeout=0.5).connect()
        assert time.monotonic() - started < 5
    with vm.client() as qmp:  # free again once the first client left
        assert qmp.query_status().running


def test_no_qemu_behind_the_socket_is_a_typed_error(run_dir: Path) -> None:
    with pytest.raises(QmpError, match="connect"):
        QmpClient(run_dir / "absent.qmp", connect_timeout=1).connect()


def test_a_qemu_that_cannot_start_leaves_nothing_running(tmp_path: Path, run_dir: Path) -> None:
    missing = Disk(path=tmp_path / "missing.qcow2", node_name="vol0")
    process = QemuProcess([missing], run_dir)
    with pytest.raises(AppRuntimeError, match="did not start"):
        process.start()
    assert not process.alive()
    assert list(run_dir.iterdir()) == []


def test_bad_disk_lists_are_refused(tmp_path: Path, run_dir: Path) -> None:
    a = Disk(path=tmp_path / "a.qcow2", node_name="vol0")
    with pytest.raises(ValueError, match="unique"):
        QemuProcess([a, a], run_dir)
    with pytest.raises(ValueError, match="too deep"):
        QemuProcess([a], Path("/tmp/" + "d" * 120))
    with pytest.raises(ValueError, match="node_name"):
        Disk(path=tmp_path / "a.qcow2", node_name="-bad name")

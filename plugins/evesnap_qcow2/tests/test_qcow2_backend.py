"""What the qcow2 backend proves beyond the suite: live snapshots never pause the
guest, and every failure is the typed error that says what happened."""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from evesnap_core import (
    CorruptVolume,
    FormatError,
    LiveAttachment,
    NoSpace,
    SnapshotNotFound,
    VolumeLocked,
    VolumeSpec,
)
from evesnap_core.testing.conformance import Backend, load_backends
from evesnap_core.toolkit import QmpError

MIB = 1024 * 1024


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    return load_backends(tmp_path, environ={}).get("qcow2")


def new_volume(backend: Backend, size: int = 8 * MIB) -> tuple[VolumeSpec, Path]:
    spec = VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=size, backend="qcow2")
    handle = backend.create_volume(spec)
    return spec, Path(handle.location)


def snapshot_names(image: Path) -> str:
    return subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", str(image)], capture_output=True, text=True, check=True
    ).stdout


@contextlib.contextmanager
def vm(tmp_path: Path, images: list[Path]) -> Iterator[tuple[Path, Path]]:
    """A QEMU holding `images` (nodes vol0, vol1...) with two QMP sockets: one for the
    backend, one for an observer that sees every event."""
    run_dir = Path(
        subprocess.run(
            ["mktemp", "-d", "/tmp/es-XXXXXX"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    sock, watch = run_dir / "a.qmp", run_dir / "b.qmp"
    argv = [
        "qemu-system-x86_64",
        "-nodefaults",
        "-display",
        "none",
        "-accel",
        "tcg",
        "-m",
        "64",
        "-qmp",
        f"unix:{sock},server=on,wait=off",
        "-qmp",
        f"unix:{watch},server=on,wait=off",
    ]
    for i, image in enumerate(images):
        argv += [
            "-blockdev",
            json.dumps(
                {
                    "driver": "qcow2",
                    "node-name": f"vol{i}",
                    "file": {"driver": "file", "filename": str(image)},
                }
            ),
            "-device",
            f"virtio-blk-pci,drive=vol{i}",
        ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (sock.exists() and watch.exists()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield sock, watch
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)


@pytest.mark.qemu
def test_live_group_snapshot_is_one_transaction_and_never_pauses(tmp_path: Path, backend: Backend) -> None:
    (a_spec, a), (b_spec, b) = new_volume(backend), new_volume(backend)
    handles = [backend.create_volume(a_spec), backend.create_volume(b_spec)]
    with vm(tmp_path, [a, b]) as (sock, watch):
        observer = QEMUMonitorProtocol(str(watch))
        observer.connect()
        try:
            live = [
                h.attached(LiveAttachment(qmp_socket=sock, node_name=f"vol{i}"))
                for i, h in enumerate(handles)
            ]
            infos = backend.snapshot_group(live, "live-1")
            assert [i.volume for i in infos] == [a_spec.uuid, b_spec.uuid]
            status = observer.cmd("query-status")
            events = [e["event"] for e in observer.get_events(wait=False)]
        finally:
            observer.close()
        assert status["status"] == "running" and status["running"] is True  # type: ignore[index]
        assert "STOP" not in events and "RESUME" not in events, events
        # offline tools are locked out while the VM holds the image
        with pytest.raises(VolumeLocked):
            backend.snapshot(handles[0], "offline-while-held")
        # a live delete frees it, in place
        backend.delete_snapshot(live[0], "live-1")
    assert "live-1" not in " ".join(i.snapshot_id for i in backend.list_snapshots(handles[0]))
    assert [i.snapshot_id for i in backend.list_snapshots(handles[1])] == ["live-1"]


@pytest.mark.qemu
def test_live_transaction_is_all_or_nothing(tmp_path: Path, backend: Backend) -> None:
    (a_spec, a), (b_spec, b) = new_volume(backend), new_volume(backend)
    handles = [backend.create_volume(a_spec), backend.create_volume(b_spec)]
    with vm(tmp_path, [a, b]) as (sock, _):
        live = [
            handles[0].attached(LiveAttachment(qmp_socket=sock, node_name="vol0")),
            handles[1].attached(LiveAttachment(qmp_socket=sock, node_name="no-such-node")),
        ]
        with pytest.raises(QmpError, match=r"no-such-node"):
            backend.snapshot_group(live, "doomed")
        assert backend.list_snapshots(live[0]) == []


def test_delete_frees_the_internal_snapshot(backend: Backend) -> None:
    spec, image = new_volume(backend)
    handle = backend.create_volume(spec)
    info = backend.snapshot(handle, "s1")
    assert info.name in snapshot_names(image)
    backend.delete_snapshot(handle, "s1")
    assert info.name not in snapshot_names(image)


def test_not_qcow2_is_a_format_error(tmp_path: Path, backend: Backend) -> None:
    spec, image = new_volume(backend)
    handle = backend.create_volume(spec)
    image.write_bytes(b"\0" * MIB)  # a raw file where the qcow2 image should be
    with pytest.raises(FormatError, match="not a qcow2 image"):
        backend.snapshot(handle, "s1")
    with pytest.raises(FormatError):
        backend.volume_details(handle)


def test_corrupt_snapshot_table_is_reported(backend: Backend) -> None:
    spec, image = new_volume(backend)
    handle = backend.create_volume(spec)
    backend.snapshot(handle, "s1")
    with open(image, "r+b") as f:  # point the snapshot table past the end of the file
        f.seek(64)
        f.write(struct.pack(">Q", 1 << 40))
    with pytest.raises(CorruptVolume):
        backend.list_snapshots(handle)


def test_corrupt_flag_shows_in_details(backend: Backend) -> None:
    spec, image = new_volume(backend)
    handle = backend.create_volume(spec)
    with open(image, "r+b") as f:  # qcow2 v3 incompatible feature bit 1: "corrupt"
        f.seek(72)
        f.write(struct.pack(">Q", 2))
    details = backend.volume_details(handle)
    assert details.corrupt


def test_unknown_snapshot_is_not_found(backend: Backend) -> None:
    spec, _ = new_volume(backend)
    handle = backend.create_volume(spec)
    with pytest.raises(SnapshotNotFound):
        backend.rollback(handle, "never")
    with pytest.raises(SnapshotNotFound):
        backend.rollback_check(handle, "never")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_no_space_is_refused_before_copying(small_fs: Path, tmp_path: Path) -> None:
    backend = load_backends(small_fs, environ={}).get("qcow2")
    spec, image = new_volume(backend, size=64 * MIB)
    handle = backend.create_volume(spec)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 7 0 4M", str(image)], check=True, capture_output=True
    )
    backend.snapshot(handle, "s1")
    before = {p.name for p in image.parent.iterdir()}
    target = VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=64 * MIB, backend="qcow2")
    with pytest.raises(NoSpace):
        backend.clone(handle, "s1", target)
    assert {p.name for p in image.parent.iterdir()} == before  # nothing half-written
    # a full disk: the snapshot fails cleanly and typed, and the image stays usable
    filler = small_fs / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\xff" * 65536)
            f.flush()
    with pytest.raises(NoSpace):
        backend.snapshot(handle, "on-a-full-disk")
    filler.unlink()
    assert [i.snapshot_id for i in backend.list_snapshots(handle)] == ["s1"]
    backend.snapshot(handle, "after")
    assert [i.snapshot_id for i in backend.list_snapshots(handle)] == ["s1", "after"]


def test_volume_details_agree_with_qemu_img_and_read_the_header_bits(backend: Backend) -> None:
    """volume_details reads the header and the file's size (no process): the same
    virtual and actual size as `qemu-img info`, and QEMU's dirty and corrupt bits."""
    spec, image = new_volume(backend, size=24 * MIB)
    handle = backend.create_volume(spec)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 7 1M 3M", str(image)], check=True, timeout=60)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)], capture_output=True, check=True, timeout=60
        ).stdout
    )
    details = backend.volume_details(handle)
    assert (details.virtual_size, details.actual_size) == (info["virtual-size"], info["actual-size"])
    assert details.actual_size >= 3 * MIB and not details.dirty and not details.corrupt
    with open(image, "r+b") as f:  # what QEMU sets: incompatible features, bits 0 and 1
        f.seek(72)
        f.write(struct.pack(">Q", 0b11))
    marked = backend.volume_details(handle)
    assert marked.dirty and marked.corrupt and len(marked.problems) == 2, marked

"""evesnap-qcow2 under stress and damage: concurrent callers, a lost or damaged
sidecar, foreign snapshots, awkward paths, and a live VM observed from a second
QMP monitor. Bytes are always checked with qemu-io or qemu-img, outside the
backend."""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from evesnap_core import AlreadyExists, ContentSource, FormatError, VolumeHandle, VolumeLocked, VolumeSpec
from evesnap_core.testing.conformance import Backend, Disk, QemuProcess, load_backends
from evesnap_qcow2 import header, sidecar

MIB = 1024 * 1024


def backend_at(persist: Path) -> Backend:
    return load_backends(persist, environ={}).get("qcow2")


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    return backend_at(tmp_path / "persist")


def new_volume(backend: Backend, size: int = 8 * MIB) -> VolumeHandle:
    return backend.create_volume(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=size))


def qemu_io(image: Path, command: str, *, shared: bool = False) -> None:
    """Write or verify (``read -P``) with qemu-io; fails the test on a mismatch."""
    argv = ["qemu-io", "-f", "qcow2", "-c", command, str(image)]
    if shared:
        argv[1:1] = ["-U", "-r"]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0 and "verification failed" not in result.stdout, (
        result.stdout + result.stderr
    )


def table(image: Path) -> list[dict[str, object]]:
    """The image's snapshot table, from qemu-img itself."""
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return list(json.loads(out).get("snapshots", []))


def check_exit(image: Path) -> int:
    return subprocess.run(["qemu-img", "check", "-f", "qcow2", str(image)], capture_output=True).returncode


def test_concurrent_snapshots_on_one_image_all_land_and_leave_it_clean(backend: Backend) -> None:
    volume = new_volume(backend)
    image = Path(volume.location)
    wanted = [f"c{i}" for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda sid: backend_at(image.parents[2]).snapshot(volume, sid), wanted))
    assert check_exit(image) == 0
    assert len(table(image)) == len(wanted)
    listed = backend.list_snapshots(volume)
    assert sorted(i.snapshot_id for i in listed) == sorted(wanted)
    # the parent chain is one line through all of them: each was taken under the lock
    parents = {i.snapshot_id: i.parent for i in listed}
    roots = [sid for sid, parent in parents.items() if parent is None]
    assert len(roots) == 1, parents
    children = [parent for parent in parents.values() if parent is not None]
    assert len(set(children)) == len(children) == len(wanted) - 1, parents


def test_a_damaged_sidecar_degrades_to_the_image_table(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    volume = new_volume(backend)
    image = Path(volume.location)
    canonical = str(uuid.uuid4())
    backend.snapshot(volume, canonical)
    backend.snapshot(volume, "not a uuid")
    sidecars = [p for p in image.parent.iterdir() if p.name.startswith(image.name) and p.suffix == ".json"]
    assert len(sidecars) == 1
    sidecars[0].write_bytes(b"{ this is not json")
    fresh = backend_at(image.parents[2])
    with caplog.at_level(logging.WARNING):
        listed = fresh.list_snapshots(volume)
    assert any("readable" in r.getMessage() for r in caplog.records)
    assert len(listed) == 2
    assert listed[0].snapshot_id == canonical  # a UUID id is read back from the tag itself
    assert all(i.name.isascii() for i in listed)
    sidecars[0].unlink()
    assert [i.name for i in fresh.list_snapshots(volume)] == [i.name for i in listed]


def test_a_foreign_snapshot_with_our_name_is_a_conflict(backend: Backend) -> None:
    volume = new_volume(backend)
    image = Path(volume.location)
    ours = backend.snapshot(volume, "mine")
    backend.delete_snapshot(volume, "mine")
    subprocess.run(["qemu-img", "snapshot", "-c", ours.name, str(image)], check=True)  # not made by evesnap
    with pytest.raises(AlreadyExists):
        backend.snapshot(volume, "mine")


def test_hostile_ids_map_to_safe_stable_tags(backend: Backend) -> None:
    volume = new_volume(backend)
    hostile = ["1", "-rf", "a,b=c", "x" * 400, "../..", "名前"]
    names = {sid: backend.snapshot(volume, sid).name for sid in hostile}
    for name in names.values():
        assert name.isascii() and not name.isdigit() and len(name.encode()) < 128
        assert "," not in name and "/" not in name and not name.startswith("-")
    again = backend_at(Path(volume.location).parents[2])
    assert {i.snapshot_id: i.name for i in again.list_snapshots(volume)} == names
    assert [str(t["name"]) for t in table(Path(volume.location))] == list(names.values())


def test_a_comma_and_a_dash_in_the_persist_path(tmp_path: Path) -> None:
    """image-opts doubles commas; a leading dash never reads as an option."""
    persist = tmp_path / "-odd,persist"
    backend = backend_at(persist)
    volume = new_volume(backend)
    image = Path(volume.location)
    qemu_io(image, "write -P 0x11 0 1M")
    backend.snapshot(volume, "s1")
    qemu_io(image, "write -P 0x22 0 1M")
    backend.rollback(volume, "s1")
    qemu_io(image, "read -P 0x11 0 1M")
    target = VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=8 * MIB)
    clone = backend.clone(volume, "s1", target)
    qemu_io(Path(clone.location), "read -P 0x11 0 1M")
    assert check_exit(image) == 0


@pytest.fixture
def run_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="esq-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.mark.qemu
def test_live_snapshot_rollback_restores_exact_bytes(backend: Backend, run_dir: Path) -> None:
    a, b = new_volume(backend), new_volume(backend)
    backend.snapshot(a, "older")
    disks = [Disk(path=Path(v.location), node_name=f"vol{i}") for i, v in enumerate((a, b))]
    with QemuProcess(disks, run_dir) as vm, vm.watcher() as watch:
        live = [v.attached(vm.attachment(f"vol{i}")) for i, v in enumerate((a, b))]
        with vm.client() as qmp:
            qmp.qemu_io("vol0", "write -P 0xa1 0 2M")
            qmp.qemu_io("vol1", "write -P 0xb1 0 2M")
        backend.snapshot_group(live, "before-update")
        with vm.client() as qmp:
            qmp.qemu_io("vol0", "write -P 0xa2 0 2M")
            qmp.qemu_io("vol1", "write -P 0xb2 1M 1M")
            qmp.qemu_io("vol0", "flush")
            qmp.qemu_io("vol1", "flush")
        assert watch.event_names() == [], "the guest was paused"
        assert watch.query_status().status == "running"
        qemu_io(Path(a.location), "read -P 0xa2 0 2M", shared=True)  # the live writes landed
        check = backend.rollback_check(live[0], "before-update")
        assert check.needs_stop and not check.possible
        with pytest.raises(VolumeLocked):
            backend.rollback(live[0], "before-update")
        with pytest.raises(VolumeLocked):  # a handle without its attachment: qemu-img meets QEMU's lock
            backend.rollback(a, "older")
        with pytest.raises(VolumeLocked):
            backend.delete_snapshot(a, "older")
        with pytest.raises(VolumeLocked):  # never pull a disk from under a running VM
            backend.destroy_volume(b)
        assert Path(b.location).exists()
    # the failed rollback and delete left the record as it was
    assert backend.snapshot(a, "probe").parent == "before-update"
    backend.delete_snapshot(a, "probe")
    for volume in (a, b):
        backend.rollback(volume, "before-update")
    qemu_io(Path(a.location), "read -P 0xa1 0 2M")
    qemu_io(Path(b.location), "read -P 0xb1 0 2M")
    assert [i.snapshot_id for i in backend.list_snapshots(a)] == ["older", "before-update"]


@pytest.mark.qemu
def test_live_delete_frees_the_snapshot_while_the_guest_runs(backend: Backend, run_dir: Path) -> None:
    volume = new_volume(backend)
    image = Path(volume.location)
    with QemuProcess([Disk(path=image, node_name="vol0")], run_dir) as vm, vm.watcher() as watch:
        live = volume.attached(vm.attachment("vol0"))
        backend.snapshot(live, "keep")
        backend.snapshot(live, "drop")
        assert [t["name"] for t in table(image)] == [i.name for i in backend.list_snapshots(live)]
        backend.delete_snapshot(live, "drop")
        backend.delete_snapshot(live, "drop")  # idempotent
        assert len(table(image)) == 1
        assert watch.event_names() == []
    assert [i.snapshot_id for i in backend.list_snapshots(volume)] == ["keep"]
    assert check_exit(image) == 0


@pytest.mark.parametrize("step", [8, 64, 64 * 1024])
def test_the_header_reader_agrees_with_qemu_img(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    """The snapshot table read straight from the file, in small and large steps,
    names exactly what qemu-img lists, in the same order."""
    image = tmp_path / "t.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "4M"], check=True)
    for name in ["a", "b" * 200, "ünï", "d"]:
        subprocess.run(["qemu-img", "snapshot", "-c", name, str(image)], check=True)
    monkeypatch.setattr(header, "READ_STEP", step)
    entries = header.read_snapshot_table(image)
    assert [(e.id, e.name) for e in entries] == [(str(t["id"]), str(t["name"])) for t in table(image)]


def test_sidecar_log_survives_a_torn_write_and_compacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "v.qcow2"
    path = sidecar.sidecar_path(image)
    sidecar.save(image, sidecar.Sidecar(current="one"))
    sidecar.save(image, sidecar.Sidecar(current="two"))
    with open(path, "ab") as f:  # a crash in the middle of the next append
        f.write(b'\n{"schemaVersion": 1, "tags": {}, "curr')
    assert sidecar.load(image).current == "two"
    sidecar.save(image, sidecar.Sidecar(current="three"))  # not glued onto the torn tail
    assert sidecar.load(image).current == "three"
    monkeypatch.setattr(sidecar, "COMPACT_AT", path.stat().st_size + 10)
    sidecar.save(image, sidecar.Sidecar(current="four"))
    assert len(path.read_bytes().splitlines()) == 1  # rewritten whole: the last state only
    assert sidecar.load(image).current == "four" and sidecar.load(image).readable
    assert path.stat().st_mode & 0o777 == 0o600


def test_populate_from_a_source_that_is_not_qcow2_is_a_format_error(tmp_path: Path, backend: Backend) -> None:
    fake = tmp_path / "content.qcow2"
    fake.write_bytes(b"\x5a" * MIB)  # raw bytes under a qcow2 label
    spec = VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=4 * MIB)
    with pytest.raises(FormatError, match="qcow2"):
        backend.populate_volume(spec, ContentSource(path=fake, format="qcow2"))
    folder = Path(backend.create_volume(spec).location).parent
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == [f"{spec.key}.qcow2"]


def test_populate_from_raw_content_holds_its_bytes_and_grows(tmp_path: Path, backend: Backend) -> None:
    raw = tmp_path / "content.raw"
    raw.write_bytes(b"\x5a" * MIB + b"\xa5" * MIB)
    seen: list[tuple[int, int]] = []
    spec = VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=16 * MIB)
    volume = backend.populate_volume(
        spec, ContentSource(path=raw, format="raw"), lambda done, total: seen.append((done, total))
    )
    image = Path(volume.location)
    qemu_io(image, "read -P 0x5a 0 1M")
    qemu_io(image, "read -P 0xa5 1M 1M")
    qemu_io(image, "read -P 0 2M 14M")
    assert backend.volume_details(volume).virtual_size == 16 * MIB
    assert seen and seen[-1][0] == seen[-1][1]


def test_populate_refuses_content_that_reads_other_host_files(tmp_path: Path, backend: Backend) -> None:
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"SECRET" * 1000)
    overlay = tmp_path / "content.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(overlay), "1M"],
        check=True,
    )
    spec = VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=MIB)
    with pytest.raises(FormatError, match="refers to another file"):
        backend.populate_volume(spec, ContentSource(path=overlay, format="qcow2"))
    assert not Path(backend.create_volume(spec).location).read_bytes().count(b"SECRET")

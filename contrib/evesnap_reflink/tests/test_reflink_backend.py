"""What the suite does not check: locking, exports across restarts, cleanup, layout.

Bytes and devices are checked from outside the backend: plain reads of the
files, /sys/block for loop devices.
"""

import errno
import json
import os
import threading
import uuid
from pathlib import Path

import pytest

from evesnap_core import NoSpace, SnapshotInUse, VolumeHandle
from evesnap_core.testing.conformance import Backend
from evesnap_core.toolkit import run, safe_name
from evesnap_reflink.harness import ReflinkHarness
from evesnap_reflink.loopdev import devices_under
from evesnap_reflink.records import VolumeManifest
from evesnap_reflink.store import Store


def store_root(harness: ReflinkHarness) -> Path:
    return harness.persist / "reflink"


def test_concurrent_snapshots_of_one_volume_are_all_kept(reflink_harness: ReflinkHarness) -> None:
    """Two backend objects (as the agent and a CLI command would be) snapshot one
    volume from eight threads: the per-volume lock keeps every manifest update."""
    first, second = reflink_harness.load(), reflink_harness.load()
    volume = reflink_harness.new_volume(first)
    wanted = [f"s{n}" for n in range(16)]
    errors: list[BaseException] = []

    def take(backend: Backend, names: list[str]) -> None:
        try:
            for name in names:
                backend.snapshot(volume, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=take, args=(first if n % 2 else second, wanted[n::8])) for n in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    listed = [i.snapshot_id for i in first.list_snapshots(volume)]
    assert sorted(listed) == sorted(wanted)
    files = os.listdir(Path(volume.location).parent / "snapshots")
    assert len(files) == len(wanted), f"snapshot files and manifest disagree: {files}"


def test_snapshot_files_are_named_by_hash_and_metadata_is_json(reflink_harness: ReflinkHarness) -> None:
    backend = reflink_harness.load()
    volume = reflink_harness.new_volume(backend)
    backend.snapshot(volume, "../../escape me")
    folder = Path(volume.location).parent
    (snapshot_file,) = (folder / "snapshots").iterdir()
    assert snapshot_file.stem == safe_name("../../escape me")  # the toolkit's injective safe name
    manifest = json.loads((folder / "volume.json").read_text())
    (record,) = manifest["snapshots"]
    assert record["snapshot_id"] == "../../escape me" and record["name"] == snapshot_file.stem
    assert record["volume_size"] == reflink_harness.volume_size and record["parent"] is None
    assert oct(os.stat(folder / "volume.json").st_mode & 0o777) == "0o600"


def loop_devices(harness: ReflinkHarness) -> list[str]:
    return [device for device, _ in devices_under(harness.persist)]


def test_an_export_outlives_a_restart_and_blocks_deleting_its_snapshot(
    reflink_harness: ReflinkHarness, tmp_path: Path
) -> None:
    backend = reflink_harness.load()
    volume = reflink_harness.new_volume(backend)
    reflink_harness.write(volume, 0, b"\x5a" * 4096)
    backend.snapshot(volume, "kept")
    export = backend.open_snapshot(volume, "kept", str(reflink_harness.runtime_dir))
    assert export.path.parent == reflink_harness.runtime_dir
    device = os.readlink(export.path)
    assert loop_devices(reflink_harness) == [device]
    with open(export.path, "rb") as f:
        assert f.read(4096) == b"\x5a" * 4096

    reborn = reflink_harness.load()
    with pytest.raises(SnapshotInUse) as in_use:
        reborn.delete_snapshot(volume, "kept")
    assert export.export_id in in_use.value.users[0]
    reborn.close_snapshot(volume, export)
    assert loop_devices(reflink_harness) == []
    assert not export.path.is_symlink()
    reborn.delete_snapshot(volume, "kept")
    assert reborn.list_snapshots(volume) == []


def test_destroy_detaches_exports_and_leaves_nothing(reflink_harness: ReflinkHarness) -> None:
    backend = reflink_harness.load()
    volume = reflink_harness.new_volume(backend)
    backend.snapshot(volume, "s1")
    export = backend.open_snapshot(volume, "s1", str(reflink_harness.runtime_dir))
    backend.destroy_volume(volume)
    assert loop_devices(reflink_harness) == []
    assert not export.path.is_symlink()
    root = store_root(reflink_harness)
    assert os.listdir(root / "volumes") == [] and os.listdir(root / "locks") == []
    backend.close_snapshot(volume, export)  # idempotent after the volume is gone


def test_a_volume_too_big_for_any_file_is_no_space_and_leaves_nothing(
    reflink_harness: ReflinkHarness,
) -> None:
    backend = reflink_harness.load()
    with pytest.raises(NoSpace):
        backend.create_volume(reflink_harness.volume_spec(size=2**64))
    root = store_root(reflink_harness)
    assert os.listdir(root / "volumes") == [] and os.listdir(root / "locks") == []


def test_a_build_that_fails_halfway_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    folder = store.folder(uuid.uuid4(), 0)
    manifest = VolumeManifest(uuid=uuid.uuid4(), generation=0, size_bytes=4096)

    def fill(image: Path) -> None:
        image.write_bytes(b"half")
        raise OSError(errno.EIO, "injected failure")

    with pytest.raises(OSError, match="injected"), store.locked(folder):
        store.build(folder, manifest, fill)
    assert os.listdir(store.volumes) == [] and os.listdir(store.locks) == []


def test_the_handle_location_is_never_trusted(reflink_harness: ReflinkHarness, tmp_path: Path) -> None:
    backend = reflink_harness.load()
    volume = reflink_harness.new_volume(backend)
    decoy = tmp_path / "decoy.raw"
    decoy.write_bytes(b"\x01" * 4096)
    lying = VolumeHandle.model_validate({**volume.model_dump(), "location": str(decoy)})
    backend.snapshot(lying, "s1")
    reflink_harness.write(volume, 0, b"\x02" * 4096)
    backend.rollback(lying, "s1")
    assert reflink_harness.read(volume, 0, 4096) == b"\0" * 4096
    assert decoy.read_bytes() == b"\x01" * 4096


def test_an_export_whose_loop_device_vanished_does_not_block_deleting(
    reflink_harness: ReflinkHarness,
) -> None:
    """After a reboot every loop device is gone but the manifest still lists the
    export; deleting its snapshot must not stay blocked forever."""
    backend = reflink_harness.load()
    volume = reflink_harness.new_volume(backend)
    backend.snapshot(volume, "s1")
    export = backend.open_snapshot(volume, "s1", str(reflink_harness.runtime_dir))
    run(["losetup", "--detach", os.readlink(export.path)])  # what a reboot does
    backend.delete_snapshot(volume, "s1")
    assert backend.list_snapshots(volume) == []
    assert not export.path.is_symlink()
    manifest = json.loads((Path(volume.location).parent / "volume.json").read_text())
    assert manifest["exports"] == []

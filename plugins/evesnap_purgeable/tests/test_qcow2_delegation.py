"""qcow2 purgeable volumes: the format work is the qcow2 backend's (reached
through the core), the generations are this backend's. Bytes are checked with
qemu-img and qemu-io, never through either backend."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from evesnap_core import ContentSource, VolumeSpec
from evesnap_core.testing.conformance import Backend, load_backends, qemu_io_read, qemu_io_write
from evesnap_core.testing.loopfs import Kind
from evesnap_core.toolkit import run

pytest.importorskip("evesnap_qcow2", reason="the qcow2 backend (plugins/evesnap_qcow2) is not installed")

MIB = 1 << 20


def backends_in(persist: Path) -> tuple[Backend, Backend]:
    registry = load_backends(persist, environ={})
    return registry.get("purgeable"), registry.get("qcow2")


def qcow2_spec(volume: uuid.UUID, generation: int) -> VolumeSpec:
    return VolumeSpec(uuid=volume, generation=generation, format="qcow2", size_bytes=64 * MIB, purgeable=True)


def qemu_img_info(path: str | Path) -> dict[str, object]:
    info: dict[str, object] = json.loads(
        run(["qemu-img", "info", "--output=json", "-U", str(path)], timeout=30).stdout
    )
    return info


def test_purgeable_volumes_are_claimed_before_the_format_backends(tmp_path: Path) -> None:
    registry = load_backends(tmp_path, environ={})
    assert registry.claim(qcow2_spec(uuid.uuid4(), 0)).name == "purgeable"
    plain = qcow2_spec(uuid.uuid4(), 0).model_copy(update={"purgeable": False})
    assert registry.claim(plain).name == "qcow2"


def test_a_qcow2_generation_is_kept_whole_and_brought_back(
    loop_filesystems: Callable[[Kind, int], Path],
) -> None:
    mount = loop_filesystems("xfs", 512 * MIB)
    purgeable, qcow2 = backends_in(mount / "persist")
    image = mount / "os.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], timeout=30)
    qemu_io_write(str(image), "qcow2", 0, b"\x42" * MIB)
    vid = uuid.uuid4()

    gen0 = purgeable.populate_volume(qcow2_spec(vid, 0), ContentSource(path=image, format="qcow2"))
    assert gen0.backend == "purgeable" and gen0.location.endswith(f"{vid}#0.qcow2")
    assert qemu_img_info(gen0.location)["format"] == "qcow2"  # made by the qcow2 backend
    details = purgeable.volume_details(gen0)
    assert details.format == "qcow2" and details.virtual_size == 64 * MIB and details.handle == gen0

    # an immediate snapshot: a reflink copy that is a whole, valid qcow2 image
    qemu_io_write(gen0.location, "qcow2", MIB, b"\x43" * MIB)
    now = purgeable.snapshot(gen0, "now")
    assert now.meta["mode"] == "reflink"
    run(["qemu-img", "check", "-f", "qcow2", now.name], timeout=60)
    assert qemu_io_read(now.name, "qcow2", 0, 2 * MIB) == b"\x42" * MIB + b"\x43" * MIB

    # the purge: the file itself is kept, and the qcow2 backend forgets it
    inode = os.stat(gen0.location).st_ino
    kept = purgeable.snapshot(gen0, "purge", retiring=True)
    assert os.stat(kept.name).st_ino == inode and kept.meta["mode"] == "kept"
    volumes = Path(gen0.location).parent
    assert sorted(p.name for p in volumes.iterdir()) == [], "the qcow2 backend's notes were left"

    gen1 = purgeable.create_volume(qcow2_spec(vid, 1))
    qemu_io_write(gen1.location, "qcow2", 0, b"\x99" * MIB)
    result = purgeable.rollback(gen1, "now")
    assert result.live_generation == 0
    assert qemu_io_read(gen0.location, "qcow2", 0, 2 * MIB) == b"\x42" * MIB + b"\x43" * MIB
    assert qemu_io_read(gen1.location, "qcow2", 0, MIB) == b"\x99" * MIB
    assert qcow2.volume_details(gen0.model_copy(update={"backend": "qcow2"})).corrupt is False

    purgeable.destroy_volume(gen1)
    purgeable.destroy_volume(gen0)
    assert sorted(p.name for p in volumes.iterdir()) == []
    assert [(i.snapshot_id, i.generation) for i in purgeable.list_snapshots(gen0)] == [
        ("now", 0),
        ("purge", 0),
    ]
    assert qemu_io_read(kept.name, "qcow2", 0, 2 * MIB) == b"\x42" * MIB + b"\x43" * MIB
    for snapshot_id in ("now", "purge"):
        purgeable.delete_snapshot(gen1, snapshot_id)  # named by either generation
    assert purgeable.list_snapshots(gen0) == []

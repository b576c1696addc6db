"""The backend toolkit on real parts: qemu-img on hostile content images, a full
loop filesystem, flock across processes, temporaries of a killed process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evesnap_core import ContentSource, FormatError, NoSpace, VolumeLocked
from evesnap_core.testing.content_images import REFERENCE_KINDS, SECRET_BYTE, referencing_image
from evesnap_core.testing.loopfs import Kind
from evesnap_core.toolkit import (
    after_delete,
    inspect_content,
    parents_first,
    populate_raw,
    reparented,
    require_space,
    run,
    safe_name,
    sweep,
    temp_file,
    volume_lock,
)
from evesnap_core.toolkit.names import MAX_LENGTH

MIB = 1 << 20


def test_safe_names_never_collide_and_stay_short() -> None:
    naive_merges = ["a/b", "a_b", "a b", "a:b", "A/B", "a\\b", "..", "__", ".", "_", "", "\udcff", "x" * 5000]
    uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    names = [safe_name(i) for i in [*naive_merges, uuid, uuid.upper()]]
    assert len(set(names)) == len(names), f"two ids mapped to one name: {names}"
    assert safe_name(uuid) == uuid, "a canonical UUID stands for itself"
    for name in names:
        assert 0 < len(name) <= MAX_LENGTH and name.isascii() and not name.isdigit()
        assert not name.startswith(("-", ".")) and "/" not in name
    assert safe_name("a/b") == safe_name("a/b"), "the same id gives the same name after a restart"


def test_lineage_reparents_on_delete_and_lists_parents_first() -> None:
    parents = {"s1": None, "s2": "s1", "s3": "s2", "s4": "s2"}
    kept, head = after_delete(parents, "s3", "s2")
    assert kept == {"s1": None, "s3": "s1", "s4": "s1"} and head == "s3"
    assert after_delete(parents, "s2", "s2")[1] == "s1", "the head moves to the deleted one's parent"
    assert reparented(parents, "s1") == {"s2": None}
    items = [("b", "a"), ("c", None), ("a", "c")]  # creation order says b first, its parent is a
    ordered = parents_first(items, lambda i: i[0], lambda i: i[1])
    assert [i[0] for i in ordered] == ["c", "a", "b"]
    looped = [("x", "y"), ("y", "x")]
    assert len(parents_first(looped, lambda i: i[0], lambda i: i[1])) == 2, (
        "a cycle is never followed forever"
    )


@pytest.mark.parametrize("kind", REFERENCE_KINDS)
def test_content_naming_another_file_is_refused_naming_it(tmp_path: Path, kind: str) -> None:
    source, secret = referencing_image(tmp_path, kind)
    with pytest.raises(FormatError, match="refers to another file") as refused:
        inspect_content(source)
    assert str(secret) in str(refused.value)
    dest = tmp_path / "volume.raw"
    with pytest.raises(FormatError):
        populate_raw(source, dest, MIB)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.path.name, secret.name]), (
        "a refused populate left files behind"
    )


def test_a_data_file_that_does_not_exist_is_still_refused_by_name(tmp_path: Path) -> None:
    source, secret = referencing_image(tmp_path, "data-file")
    secret.unlink()
    with pytest.raises(FormatError, match=str(secret)):
        inspect_content(source)


def test_self_contained_content_is_described(tmp_path: Path) -> None:
    raw = tmp_path / "c.raw"
    raw.write_bytes(bytes([SECRET_BYTE]) * MIB + b"\0" * MIB)
    image = tmp_path / "c.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], timeout=60)
    info = inspect_content(ContentSource(path=image, format="qcow2"))
    assert info.virtual_size == 2 * MIB and info.data_bytes == MIB
    dest = tmp_path / "vol.raw"
    populate_raw(ContentSource(path=image, format="qcow2"), dest, 4 * MIB)
    assert dest.stat().st_size == 4 * MIB and dest.read_bytes()[: 2 * MIB] == raw.read_bytes()
    assert oct(dest.stat().st_mode & 0o777) == "0o600"


def test_no_space_is_typed_and_leaves_nothing_on_a_full_filesystem(
    loop_filesystems: Callable[[Kind, int], Path],
) -> None:
    mount = loop_filesystems("ext4", 16 * MIB)
    raw = mount.parent / "content.raw"
    raw.write_bytes(os.urandom(24 * MIB))
    before = sorted(p.name for p in mount.iterdir())
    with pytest.raises(NoSpace) as full:
        populate_raw(ContentSource(path=raw, format="raw"), mount / "volume.raw", 24 * MIB)
    assert full.value.where == str(mount) and full.value.needed >= 24 * MIB
    assert full.value.available < full.value.needed
    assert sorted(p.name for p in mount.iterdir()) == before, "a refused copy left a partial file"
    with pytest.raises(NoSpace):
        require_space(mount, 1 << 40)


def test_a_failed_operation_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "volume.raw"
    with pytest.raises(RuntimeError), temp_file(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the operation failed")
    assert list(tmp_path.iterdir()) == []


def _write_temp_and_hang(dest: str) -> None:
    with temp_file(Path(dest)) as tmp:
        tmp.write_bytes(b"half")
        time.sleep(60)


def test_a_killed_operations_temporary_is_swept(tmp_path: Path) -> None:
    child = multiprocessing.get_context("fork").Process(
        target=_write_temp_and_hang, args=(str(tmp_path / "v"),)
    )
    child.start()
    deadline = time.monotonic() + 10
    while not list(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sweep(tmp_path) == [], "a living process's temporary is kept"
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    (left,) = tmp_path.iterdir()
    assert sweep(tmp_path) == [left] and list(tmp_path.iterdir()) == []


def _hold_lock(path: str, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    with volume_lock(Path(path), "vol#0"):
        ready.set()
        time.sleep(60)


def test_the_volume_lock_holds_across_processes_and_times_out_typed(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "vol.lock"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(lock), ready))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(VolumeLocked, match="vol#0"), volume_lock(lock, "vol#0", timeout=0.3):
            pytest.fail("got a lock another process holds")
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    with volume_lock(lock, "vol#0", timeout=1, gone=lambda: True):  # the kernel released it
        pass
    assert not lock.exists(), "the lock of a volume that is gone stays behind"

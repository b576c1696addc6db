"""Faults below the orchestrator: a hanging tool, a garbage state file, a full disk."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from uuid import UUID

import pytest

from evesnap_core.durable import atomic_write
from evesnap_core.errors import CommandFailed, CommandTimeout, NoSpace
from evesnap_core.process import run
from evesnap_core.records import AppRecord
from evesnap_core.state.persist_store import PersistStore


def test_a_hanging_tool_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {marker}; echo started >&2; wait"
    start = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"did not finish within 0\.5 s") as info:
        run(["bash", "-c", script], timeout=0.5)
    assert time.monotonic() - start < 5
    assert "started" in info.value.stderr  # stderr is kept
    child = int(marker.read_text())
    time.sleep(0.2)
    try:  # the whole process group is gone (or a zombie: this sandbox's init does not reap)
        state = Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), f"the grandchild survived the timeout (state {state})"


def test_a_failing_tool_keeps_its_stderr() -> None:
    with pytest.raises(CommandFailed) as info:
        run(["qemu-img", "info", "/nonexistent/image.qcow2"])
    assert info.value.returncode == 1 and "nonexistent" in str(info.value)


def test_argv_must_be_a_list_never_a_shell_string() -> None:
    with pytest.raises(TypeError):
        run("echo hi")  # type: ignore[arg-type]


def test_garbage_state_is_quarantined_and_the_rest_loads(tmp_path: Path) -> None:
    store = PersistStore(tmp_path)
    good = AppRecord(uuid="11111111-1111-4111-8111-111111111111", name="good")
    store.save_app(good)
    bad = store.apps_dir / "22222222-2222-4222-8222-222222222222.json"
    bad.write_bytes(b'{"SchemaVersion": 1, "AppInstanceID": "2222')  # truncated by something else
    reborn = PersistStore(tmp_path)
    apps, _ = reborn.load()
    assert [a.name for a in apps.values()] == ["good"]
    assert not bad.exists() and any(
        p.name.startswith(bad.name) for p in (store.root / "quarantine").iterdir()
    )
    [damaged] = reborn.damaged()
    assert damaged.app == UUID("22222222-2222-4222-8222-222222222222") and "not JSON" in damaged.description


def test_a_full_disk_is_a_typed_error_and_the_old_file_survives(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], check=True)
    try:
        target = mount / "state.json"
        atomic_write(target, b"old")
        with pytest.raises(NoSpace):
            atomic_write(target, b"x" * (2 << 20))
        assert target.read_bytes() == b"old"
        assert [p.name for p in mount.iterdir()] == ["state.json"]  # no temporary file left
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)

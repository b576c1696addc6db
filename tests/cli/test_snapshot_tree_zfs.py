"""The snapshot tree, clones and read-only access where ZFS behaves differently:
through the real `evesnap` command, on zvols of a real pool (inside the ZFS VM,
contrib/zfsvm/zfsvm). ZFS rolls back only to the newest snapshot: an older one
is refused naming the newer ones unless --destroy-newer, which destroys and
names them; a ZFS clone keeps its origin snapshot in use; a snapshot is read
through its own device."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_zfs.harness import read_direct

from ..support import APP, MIB, VOL, VOL2, Cli

pytestmark = pytest.mark.zfs


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    made = Cli(tmp_path, volumes=(VOL, VOL2))
    made.env.update(
        EVESNAP_RUNTIME="embedded",
        EVESNAP_VOLUME_FORMAT="zvol",
        EVESNAP_BLOCK_PLUGINS="qcow2,purgeable,reflink",
        EVESNAP_ZFS_POOL=os.environ.get("ZFSVM_POOL", "evesnaptest"),
        EVESNAP_ZFS_PREFIX=f"cli{uuid.uuid4().hex[:8]}",
    )
    try:
        out = made("apply", str(made.config()))
        assert out.returncode == 0, out.stderr
        yield made
    finally:
        made.cleanup()


def device(cli: Cli, volume: str) -> str:
    return "/dev/zvol/" + cli.location(volume)


def put(cli: Cli, value: int) -> None:
    for volume, byte in ((VOL, value), (VOL2, value + 100)):
        fd = os.open(device(cli, volume), os.O_WRONLY)
        try:
            os.pwrite(fd, bytes([byte]) * MIB, 0)
            os.fsync(fd)
        finally:
            os.close(fd)


def read(path: str) -> int:
    data = read_direct(Path(path), 0, MIB)
    assert len(set(data)) == 1, f"{path} holds mixed bytes"
    return data[0]


def state(cli: Cli) -> tuple[int, int]:
    return read(device(cli, VOL)), read(device(cli, VOL2))


def ok(cli: Cli, *args: str) -> str:
    out = cli(*args)
    assert out.returncode == 0, f"evesnap {' '.join(args)}: {out.stderr}"
    return out.stdout


def snap(cli: Cli) -> str:
    return ok(cli, "snapshot", "create", APP).strip()


def tree(cli: Cli) -> list[dict[str, Any]]:
    return list(json.loads(ok(cli, "snapshot", "list", APP, "--json")))


def test_rollback_to_an_older_snapshot_names_the_newer_ones_and_destroys_only_when_told(cli: Cli) -> None:
    put(cli, 1)
    s1 = snap(cli)
    put(cli, 2)
    s2 = snap(cli)
    put(cli, 3)
    s3 = snap(cli)
    put(cli, 4)
    refused = cli("snapshot", "rollback", APP, s1)
    assert refused.returncode == 1
    assert s2 in refused.stderr and s3 in refused.stderr and "--destroy-newer" in refused.stderr
    assert state(cli) == (4, 104) and [n["id"] for n in tree(cli)] == [s1, s2, s3]  # nothing touched

    ok(cli, "snapshot", "rollback", APP, s3)  # the newest: allowed
    assert state(cli) == (3, 103)
    out = ok(cli, "snapshot", "rollback", APP, s1, "--destroy-newer")
    assert f"destroyed newer snapshot {s2}" in out and f"destroyed newer snapshot {s3}" in out
    assert state(cli) == (1, 101)
    assert [n["id"] for n in tree(cli)] == [s1] and tree(cli)[0]["current"]
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    assert any(s2 in e["description"] and "destroyed" in e["description"] for e in app.get("appErr", []))


def test_a_zfs_clone_keeps_its_origin_snapshot_in_use(cli: Cli) -> None:
    put(cli, 5)
    s1 = snap(cli)
    made = json.loads(ok(cli, "clone", "app", APP, s1, "--name", "trial", "--json"))
    clones = ["/dev/zvol/" + v for v in made["volumes"]]
    assert (read(clones[0]), read(clones[1])) == (5, 105)
    put(cli, 6)
    assert (read(clones[0]), read(clones[1])) == (5, 105)  # independent bytes

    busy = cli("snapshot", "delete", APP, s1)
    assert busy.returncode == 1 and "clone" in busy.stderr.lower()  # named, never silent
    assert [n["id"] for n in tree(cli)] == [s1]
    ok(cli, "clone", "delete", made["app"])
    ok(cli, "snapshot", "delete", APP, s1)
    assert tree(cli) == []


def test_read_only_access_is_the_snapshots_own_device(cli: Cli) -> None:
    put(cli, 7)
    s1 = snap(cli)
    put(cli, 8)
    exports = json.loads(ok(cli, "snapshot", "open", APP, s1, "--json"))
    assert [e["kind"] for e in exports] == ["path", "path"]
    assert [read(e["path"]) for e in exports] == [7, 107]
    with pytest.raises(OSError):
        fd = os.open(exports[0]["path"], os.O_WRONLY)
        try:
            os.pwrite(fd, b"\0" * 4096, 0)
        finally:
            os.close(fd)
    ok(cli, "snapshot", "close", APP, s1)
    assert state(cli) == (8, 108)

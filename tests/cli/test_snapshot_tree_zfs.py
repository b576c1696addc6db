"""The snapshot tree, clones and read-only access where ZFS behaves differently,
on zvols of a real pool (inside the ZFS VM, contrib/zfsvm/zfsvm). ZFS rolls back
only to the newest snapshot: an older one is refused naming the newer ones
unless told to destroy them, which destroys and names them; a ZFS clone keeps
its origin snapshot in use; a snapshot is read through its own device.

The orchestrator is driven in-process through the session the CLI opens (a CLI
process costs ~25 s under the VM's emulated CPU); one case runs the real
command to check what the operator reads."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.cli.session import Session, open_session
from evesnap_core.errors import EvesnapError
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model

from ..support import APP, VOL, VOL2, Cli
from ..zfs_support import put, read, state, zfs_settings

pytestmark = pytest.mark.zfs
APP_ID = uuid.UUID(APP)


@pytest.fixture
def zfs_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"EVESNAP_RUNTIME": "embedded", **zfs_settings("tree")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def session(tmp_path: Path, zfs_env: dict[str, str]) -> Iterator[Session]:
    persist = tmp_path / "persist"
    made = open_session(persist, "embedded")
    config = Cli(tmp_path, volumes=(VOL, VOL2)).config_data()
    made.orchestrator.reconcile(parse_model(DeviceConfig, json.dumps(config).encode()))
    yield made
    made.orchestrator.reconcile(DeviceConfig())


def ids(session: Session) -> list[str]:
    return sorted(session.orchestrator.apps[APP_ID].snapshots, key=lambda s: s)


def test_rollback_to_an_older_snapshot_names_the_newer_ones_and_destroys_only_when_told(
    session: Session,
) -> None:
    orch = session.orchestrator
    put(session, 1)
    s1 = orch.snapshot_now(APP_ID)
    put(session, 2)
    s2 = orch.snapshot_now(APP_ID)
    put(session, 3)
    s3 = orch.snapshot_now(APP_ID)
    put(session, 4)
    with pytest.raises(EvesnapError) as refused:
        orch.rollback_now(APP_ID, s1)
    assert s2 in str(refused.value) and s3 in str(refused.value)
    assert state(session) == (4, 104) and set(ids(session)) == {s1, s2, s3}  # nothing touched

    assert orch.rollback_now(APP_ID, s3) == []  # the newest: allowed
    assert state(session) == (3, 103)
    assert sorted(orch.rollback_now(APP_ID, s1, destroy_newer=True)) == sorted([s2, s3])
    assert state(session) == (1, 101)
    record = orch.apps[APP_ID]
    assert ids(session) == [s1] and record.current_snapshot == s1
    assert any(s2 in p.description and "destroyed" in p.description for p in record.problems)


def test_a_zfs_clone_keeps_its_origin_snapshot_in_use(session: Session) -> None:
    orch = session.orchestrator
    put(session, 5)
    s1 = orch.snapshot_now(APP_ID)
    clone = orch.clone_app(APP_ID, s1, "trial")
    clones = ["/dev/zvol/" + v.handle.location for v in orch.app_volumes(orch.apps[clone]) if v.handle]
    assert [read(c) for c in clones] == [5, 105]
    put(session, 6)
    assert [read(c) for c in clones] == [5, 105]  # independent bytes

    outcome = orch.delete_now(APP_ID, s1)
    assert list(outcome.failed) == [s1] and "in use by" in outcome.failed[s1]
    assert all(c.removeprefix("/dev/zvol/") in outcome.failed[s1] for c in clones)  # the clones named
    assert ids(session) == [s1]
    orch.remove_clone(clone)
    assert orch.delete_now(APP_ID, s1).deleted == [s1]
    assert ids(session) == []


def test_read_only_access_is_the_snapshots_own_device(session: Session) -> None:
    orch = session.orchestrator
    put(session, 7)
    s1 = orch.snapshot_now(APP_ID)
    put(session, 8)
    exports = orch.open_snapshot(APP_ID, s1)
    assert [e.kind for e in exports.values()] == ["path", "path"]
    assert [read(str(e.path)) for e in exports.values()] == [7, 107]
    first = str(next(iter(exports.values())).path)
    with pytest.raises(OSError):
        fd = os.open(first, os.O_WRONLY)
        try:
            os.pwrite(fd, b"\0" * 4096, 0)
        finally:
            os.close(fd)
    orch.close_snapshot(APP_ID, s1)
    assert state(session) == (8, 108)


def test_the_operator_reads_which_snapshots_block_a_rollback(tmp_path: Path, zfs_env: dict[str, str]) -> None:
    cli = Cli(tmp_path, volumes=(VOL,))
    cli.env.update(zfs_env)
    try:
        assert cli("apply", str(cli.config())).returncode == 0
        s1, s2 = (cli("snapshot", "create", APP).stdout.strip() for _ in range(2))
        refused = cli("snapshot", "rollback", APP, s1)
        assert refused.returncode == 1 and s2 in refused.stderr and "--destroy-newer" in refused.stderr
    finally:
        cli.cleanup()

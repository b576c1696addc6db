"""Crash points inside evesnap-zfs (inside the ZFS VM, contrib/zfsvm/zfsvm): an
agent SIGKILLed at each step boundary of a group snapshot, a rollback that
destroys newer snapshots, and a delete, on two zvols of a real pool. After a
restart (recovery) and a reconcile: no snapshot lost or duplicated, no ZFS
snapshot without a record nor a record without its ZFS snapshots, the rollback
applied, and the zvols' bytes as expected.

The agent is a forked copy of the test process (a new Python costs ~25 s under
the VM's emulated CPU); each step runs in its own child, which holds the
persist folder's lock only while it lives, as an agent does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from evesnap_core.cli.session import Session, open_session
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model
from evesnap_zfs.backend import CRASH_POINTS

from ..support import APP, VOL, VOL2, Cli
from ..zfs_support import device, put, state, zfs_settings

pytestmark = pytest.mark.zfs
APP_ID = uuid.UUID(APP)
RECOVERED: list[str] = []


@pytest.fixture
def persist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in {**zfs_settings("crash"), "EVESNAP_RUNTIME_DIR": str(tmp_path / "run")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("EVESNAP_CRASH_AT", raising=False)
    (tmp_path / "config.json").write_text(json.dumps(Cli(tmp_path, volumes=(VOL, VOL2)).config_data()))
    return tmp_path / "persist"


def as_agent(persist: Path, step: Callable[[Session], None], crash_at: str | None = None) -> int:
    """Run `step` in a forked agent (reconciled to the config first); its exit signal or status."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if crash_at:
                os.environ["EVESNAP_CRASH_AT"] = crash_at
            session = open_session(persist, "embedded")
            session.orchestrator.reconcile(config(persist))
            step(session)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def config(persist: Path) -> DeviceConfig:
    return parse_model(DeviceConfig, (persist.parent / "config.json").read_bytes())


def zfs_ids(session: Session) -> dict[str, set[str]]:
    """Per zvol, the evesnap ids of its ZFS snapshots, read from ZFS itself."""
    out = {}
    for volume in (VOL, VOL2):
        dataset = device(session, volume).removeprefix("/dev/zvol/")
        backend = session.registry.get("zfs")
        record = next(v for v in session.orchestrator.volumes.values() if str(v.spec.uuid) == volume)
        assert record.handle is not None
        out[volume] = {i.snapshot_id for i in backend.list_snapshots(record.handle)}
        listed = subprocess.run(
            ["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", dataset],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
        assert len(listed) == len(out[volume]), listed
    return out


def restarted(persist: Path) -> Session:
    """What the next agent does: recover at start, then reconcile."""
    session = open_session(persist, "embedded")
    session.orchestrator.reconcile(config(persist))
    return session


def consistent(session: Session) -> set[str]:
    """Records and ZFS agree; the available snapshot ids."""
    record = session.orchestrator.apps[APP_ID]
    available = {s.id for s in record.snapshots.values() if s.state == "available"}
    assert {s.state for s in record.snapshots.values()} <= {"available"}, record.snapshots
    for volume, ids in zfs_ids(session).items():
        assert ids == available, f"{volume}: ZFS has {ids}, evesnap records {available}"
    return available


S1, S2, S3 = (str(uuid.UUID(int=n)) for n in (101, 102, 103))


def setup_two_snapshots(session: Session) -> None:
    put(session, 1)
    session.orchestrator.snapshot_now(APP_ID, S1)
    put(session, 2)
    session.orchestrator.snapshot_now(APP_ID, S2)
    put(session, 3)


@pytest.mark.parametrize("point", ["zfs.snapshot.made", "zfs.snapshot.parents_set"])
def test_killed_inside_a_group_snapshot(persist: Path, point: str) -> None:
    assert as_agent(persist, setup_two_snapshots) == 0
    killed = as_agent(persist, lambda s: s.orchestrator.snapshot_now(APP_ID, S3), crash_at=point)
    assert killed == -signal.SIGKILL
    session = restarted(persist)
    available = consistent(session)
    assert available in ({S1, S2}, {S1, S2, S3})  # undone whole, or whole: never one zvol of two
    assert state(session) == (3, 103)
    RECOVERED.append(point)


@pytest.mark.parametrize("point", ["zfs.rollback.newer_destroyed", "zfs.rollback.applied"])
def test_killed_inside_a_rollback_that_destroys_newer(persist: Path, point: str) -> None:
    assert as_agent(persist, setup_two_snapshots) == 0
    killed = as_agent(
        persist, lambda s: s.orchestrator.rollback_now(APP_ID, S1, destroy_newer=True), crash_at=point
    )
    assert killed == -signal.SIGKILL
    session = restarted(persist)  # the rollback resumes from its record
    assert consistent(session) == {S1}
    assert state(session) == (1, 101)
    assert session.orchestrator.apps[APP_ID].current_snapshot == S1
    RECOVERED.append(point)


def test_killed_between_the_zvols_of_a_delete(persist: Path) -> None:
    assert as_agent(persist, setup_two_snapshots) == 0
    killed = as_agent(
        persist, lambda s: s.orchestrator.delete_now(APP_ID, S2), crash_at="zfs.delete.destroyed"
    )
    assert killed == -signal.SIGKILL
    session = restarted(persist)  # the deletion resumes from its record
    assert consistent(session) == {S1}
    assert state(session) == (3, 103)
    RECOVERED.append("zfs.delete.destroyed")


def test_every_zfs_crash_point_was_exercised() -> None:
    """Runs last in this module: 'N crash points, N recovered'."""
    print(f"\n{len(CRASH_POINTS)} ZFS crash points, {len(set(RECOVERED))} recovered")
    assert set(RECOVERED) == set(CRASH_POINTS)

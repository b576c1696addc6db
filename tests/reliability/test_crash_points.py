"""The agent SIGKILLed at every step boundary of create, rollback and delete,
restarted, and left to converge. After each: no snapshot lost or duplicated, no
backend snapshot without a record nor a record without one, the rollback
applied, the volumes' bytes as expected. Real qcow2 volumes, a real QEMU app,
two volumes per app.

Every point runs in the default suite (about a minute).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends

from ..support import MIB, VOL, VOL2, Cli

pytestmark = pytest.mark.qemu

SNAPSHOT_POINTS = ["snapshot.intent_recorded", "snapshot.backend_group_done", "snapshot.recorded"]
ROLLBACK_POINTS = [
    "rollback.intent_recorded",
    "rollback.app_stopped",
    "rollback.volume_done",
    "rollback.recorded",
    "converge.deployed",
]
DELETE_POINTS = ["converge.app_stopped", "delete.intent_recorded", "delete.volume_done", "delete.recorded"]


def points(names: list[str]) -> list[str]:
    return names


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path, volumes=(VOL, VOL2))
    try:
        yield made
    finally:
        made.cleanup()


def tags(device: Cli, volume: str) -> set[str]:
    """evesnap's snapshot ids inside one qcow2 image, read with qemu-img."""
    out = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", device.location(volume)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {word.split("-snapshot-")[1] for word in out.split() if "-snapshot-" in word}


def run_phase(device: Cli, config: dict[str, Any], crash_at: str | None, done: Any) -> dict[str, Any]:
    path, reports = device.root / "device.json", device.root / "reports.json"
    path.write_text(json.dumps(config))
    reports.unlink(missing_ok=True)  # only reports of this run count
    if crash_at:
        device.start_agent(path, reports, crash_at=crash_at)
        assert device.agent is not None
        code = device.agent.wait(timeout=120)
        assert code == -9, f"the agent was to die at {crash_at} but exited {code}: {device.agent.stderr}"
        device.agent = None
        reports.unlink(missing_ok=True)
    device.start_agent(path, reports)
    try:
        return device.wait_reports(reports, done)
    finally:
        assert device.stop_agent() == 143  # SIGTERM: one line, exit 128+15


def app(reports: dict[str, Any]) -> dict[str, Any]:
    return dict(reports["apps"][0])


def prepare(device: Cli, snap: str) -> None:
    assert device("apply", str(device.config())).returncode == 0
    device.guest_write(0xA1, 0)
    device.guest_write(0xA2, 1)


@pytest.mark.parametrize("crash_at", points(SNAPSHOT_POINTS))
def test_kill_during_snapshot(device: Cli, crash_at: str) -> None:
    snap = str(uuid.uuid4())
    prepare(device, snap)
    reports = run_phase(
        device,
        device.config_data(snapshots=[snap]),
        crash_at,
        lambda r: app(r)["state"] == "RUNNING" and app(r).get("snapshots"),
    )
    assert [s["id"] for s in app(reports)["snapshots"]] == [snap]  # retried once, never duplicated
    assert tags(device, VOL) == tags(device, VOL2) == {snap}  # every volume, no orphan


@pytest.mark.parametrize("crash_at", points(ROLLBACK_POINTS))
def test_kill_during_rollback(device: Cli, crash_at: str) -> None:
    snap = str(uuid.uuid4())
    prepare(device, snap)
    assert device("apply", str(device.config(snapshots=[snap]))).returncode == 0
    device.guest_write(0xB1, 0)
    device.guest_write(0xB2, 1)
    config = device.config_data(snapshots=[snap], version="2", counter=1, active=snap)
    reports = run_phase(
        device, config, crash_at, lambda r: app(r)["appVersion"] == "1" and app(r)["state"] == "RUNNING"
    )
    assert device.data(VOL) == bytes([0xA1]) * MIB and device.data(VOL2) == bytes([0xA2]) * MIB
    assert [s["id"] for s in app(reports)["snapshots"]] == [snap]
    # applied exactly once: data written after the rollback survives an agent restart
    device.guest_write(0xC1, 0)
    run_phase(device, config, None, lambda r: app(r)["state"] == "RUNNING")
    assert device.data(VOL) == bytes([0xC1]) * MIB


@pytest.mark.parametrize("crash_at", points(DELETE_POINTS))
def test_kill_during_delete(device: Cli, crash_at: str) -> None:
    snap = str(uuid.uuid4())
    prepare(device, snap)
    assert device("apply", str(device.config(snapshots=[snap]))).returncode == 0
    # removed from the list while the app runs, and the app stopped: the deletion happens
    config = device.config_data(snapshots=[], activate=False)
    reports = run_phase(
        device, config, crash_at, lambda r: app(r)["state"] == "HALTED" and not app(r).get("snapshots")
    )
    assert app(reports).get("snapshots", []) == []
    assert tags(device, VOL) == tags(device, VOL2) == set()

"""The reference's manual integration list (seed 001, "Test Cases"), automated:
real qcow2 volumes (one purgeable, one not) attached to a real QEMU app, the
real CLI and agent, restarts by SIGKILL. Each case checks bytes and reports."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ..support import volume_rows
from .world import APP, DATA_VOL, MIB, OS_VOL, Device, new_id

pytestmark = pytest.mark.qemu

UPDATE, IMMEDIATE = 1, 2


def app_of(reports: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in reports["apps"] if a["AppID"] == APP)


def snapshot_ids(reports: dict[str, Any]) -> list[str]:
    return [s["id"] for s in app_of(reports).get("snapshots", [])]


def qcow2_snapshots(location: str) -> str:
    return subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", location], capture_output=True, text=True, check=True
    ).stdout


def deploy_and_update(device: Device, snap: str) -> dict[str, Any]:
    """v1 running with data written; then v2 (new OS content) with an app-update snapshot."""
    first = device.apply(device.config(version=1))
    assert app_of(first)["state"] == "RUNNING", first
    device.write_live(1, 0xD1)  # the data volume, written by the "guest"
    return device.apply(device.config(version=2, os_gen=1, snapshots=[(snap, UPDATE)]))


def test_creation(device: Device) -> None:
    snap = new_id()
    reports = deploy_and_update(device, snap)
    app = app_of(reports)
    assert app["appVersion"] == "2" and app["state"] == "RUNNING"
    [reported] = app["snapshots"]
    assert reported["id"] == snap and reported["configVersion"] == "1"
    assert reported["type"] == "SNAPSHOT_TYPE_APP_UPDATE" and "snapErr" not in reported
    data = device.volume(reports, DATA_VOL)
    assert data["backend"] == "qcow2"
    assert snap in qcow2_snapshots(data["location"])  # a real internal snapshot
    os_vol = device.volume(reports, OS_VOL)
    assert os_vol["generationCount"] == "1" and os_vol["backend"] == "purgeable"
    assert device.read(os_vol["location"]) == bytes([0x11]) * MIB  # the new content


def test_rollback_with_non_purgeable_and_purgeable_volumes(device: Device) -> None:
    snap = new_id()
    deploy_and_update(device, snap)
    device.write_live(1, 0xEE)  # damage the data
    reports = device.apply(
        device.config(version=2, os_gen=1, snapshots=[(snap, UPDATE)], counter=1, active=snap)
    )
    app = app_of(reports)
    assert app["appVersion"] == "1" and app["state"] == "RUNNING", app
    assert snapshot_ids(reports) == [snap]
    data = device.volume(reports, DATA_VOL)
    assert device.read(data["location"]) == bytes([0xD1]) * MIB
    os_gen0 = next(
        v for v in volume_rows(device.status()) if v["uuid"] == OS_VOL and v["generationCount"] == "0"
    )
    assert device.read(os_gen0["location"]) == bytes([0x10]) * MIB  # the old generation is back
    # the QEMU app runs on the restored generation
    assert device.qmp("query-status")["status"] == "running"


def test_delete_without_restart(device: Device) -> None:
    snap = new_id()
    reports = deploy_and_update(device, snap)
    data = device.volume(reports, DATA_VOL)["location"]
    reports = device.apply(device.config(version=2, os_gen=1, snapshots=[]))
    assert snapshot_ids(reports) == []  # reported at once
    assert snap in qcow2_snapshots(data)  # carried out at the next stop
    device.apply(device.config(version=2, os_gen=1, snapshots=[], activate=False))
    assert snap not in qcow2_snapshots(data)
    assert device.read(data) == bytes([0xD1]) * MIB  # deleting a snapshot never touches the data


def test_delete_with_agent_restart(device: Device) -> None:
    snap = new_id()
    reports = deploy_and_update(device, snap)
    data = device.volume(reports, DATA_VOL)["location"]
    device.write_config(device.config(version=2, os_gen=1, snapshots=[]))
    device.start_agent()
    device.wait_for("deletion reported", lambda r: bool(r.get("apps")) and snapshot_ids(r) == [])
    device.kill_agent()  # the pending deletion must survive (a reference gap)
    device.write_config(device.config(version=2, os_gen=1, snapshots=[], activate=False))
    device.start_agent()
    device.wait_for("app stopped", lambda r: app_of(r)["state"] == "HALTED")
    assert snap not in qcow2_snapshots(data)
    assert device.read(data) == bytes([0xD1]) * MIB


@pytest.mark.parametrize(
    "crash_at", ["snapshot.backend_group_done", "snapshot.volume_retired", "snapshot.recorded"]
)
def test_agent_killed_during_creation(device: Device, crash_at: str) -> None:
    snap = new_id()
    device.apply(device.config(version=1))
    device.write_live(1, 0xD1)
    device.write_config(device.config(version=2, os_gen=1, snapshots=[(snap, UPDATE)]))
    device.start_agent(crash_at=crash_at)
    assert device.wait_agent_exit() == -9
    device.start_agent()
    reports = device.wait_for("converged", lambda r: app_of(r)["appVersion"] == "2")
    data = device.volume(reports, DATA_VOL)["location"]
    listed = qcow2_snapshots(data)
    if snap in snapshot_ids(reports):  # completed: exactly one snapshot, with its bytes
        assert listed.count(snap[:8]) >= 1
    else:  # undone: nothing left behind on any volume
        assert snap not in listed
    assert app_of(reports)["state"] == "RUNNING"
    assert device.read(data) == bytes([0xD1]) * MIB  # the data survived the crash
    os_new = device.volume(reports, OS_VOL)["location"]
    assert device.read(os_new) == bytes([0x11]) * MIB  # and the update landed


@pytest.mark.parametrize("crash_at", ["rollback.app_stopped", "rollback.volume_done", "rollback.recorded"])
def test_agent_killed_during_rollback(device: Device, crash_at: str) -> None:
    snap = new_id()
    deploy_and_update(device, snap)
    device.write_live(1, 0xEE)
    device.write_config(
        device.config(version=2, os_gen=1, snapshots=[(snap, UPDATE)], counter=1, active=snap)
    )
    device.start_agent(crash_at=crash_at)
    assert device.wait_agent_exit() == -9
    device.start_agent()
    reports = device.wait_for(
        "rolled back", lambda r: app_of(r)["appVersion"] == "1" and app_of(r)["state"] == "RUNNING"
    )
    data = device.volume(reports, DATA_VOL)["location"]
    assert device.read(data) == bytes([0xD1]) * MIB


def test_new_snapshot_after_a_delete_and_while_one_exists(device: Device) -> None:
    first, second, third = new_id(), new_id(), new_id()
    deploy_and_update(device, first)
    # delete the first, then take a new one
    device.apply(device.config(version=2, os_gen=1, snapshots=[], activate=False))
    device.apply(device.config(version=2, os_gen=1, snapshots=[]))
    device.write_live(1, 0xC2)
    reports = device.apply(device.config(version=2, os_gen=1, snapshots=[(second, IMMEDIATE)]))
    assert snapshot_ids(reports) == [second]
    # another one while one exists
    device.write_live(1, 0xC3)
    both = [(second, IMMEDIATE), (third, IMMEDIATE)]
    reports = device.apply(device.config(version=2, os_gen=1, snapshots=both))
    assert snapshot_ids(reports) == [second, third]
    data = device.volume(reports, DATA_VOL)["location"]
    device.write_live(1, 0xEE)
    for target, value, counter in ((second, 0xC2, 1), (third, 0xC3, 2)):  # each holds its own bytes
        device.apply(device.config(version=2, os_gen=1, snapshots=both, counter=counter, active=target))
        assert device.read(data) == bytes([value]) * MIB


def test_app_deletion_after_rollback_cleans_up(device: Device) -> None:
    snap = new_id()
    deploy_and_update(device, snap)
    reports = device.apply(
        device.config(version=2, os_gen=1, snapshots=[(snap, UPDATE)], counter=1, active=snap)
    )
    locations = [v["location"] for v in volume_rows(device.status())]
    reports = device.apply(device.config(with_app=False))
    assert reports["apps"] == []
    # only the volumes the config still lists remain; no snapshot is left inside them
    remaining = {v["location"] for v in volume_rows(device.status())}
    for location in locations:
        if location in remaining:
            assert snap not in qcow2_snapshots(location)
    snapshots_dir = device.persist / "vault" / "snapshots"
    leftovers = [p for p in snapshots_dir.rglob("*") if p.is_file()] if snapshots_dir.exists() else []
    assert not leftovers, f"snapshot files left behind: {leftovers}"

"""EVE's snapshot of a zvol adopted (inside the ZFS VM, contrib/zfsvm/zfsvm): the
zvol and its snapshot ``<zvol>@YYYYMMDD-HHMMSSmmm`` made as EVE makes them
(no evesnap property), EVE's folder naming the full snapshot path; evesnap
reports it available, rolls back to it and deletes it. In-process (a CLI
process costs ~25 s under the VM's emulated CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from evesnap_core.cli.session import open_session
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model

from ..eve_fixtures import write_eve_snapshot_folder
from ..support import APP, MIB, VOL, Cli
from ..zfs_support import read, zfs_settings

pytestmark = pytest.mark.zfs
SNAP = "6ba7b8c2-9dad-41d1-80b4-00c04fd430c8"


def zfs(*args: str) -> str:
    return subprocess.run(["zfs", *args], capture_output=True, text=True, timeout=120, check=True).stdout


def fill(device: str, value: int) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes([value]) * MIB, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def test_eve_s_zvol_snapshot_is_adopted_rolled_back_to_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evesnap_zfs import devices

    env = {"EVESNAP_RUNTIME": "embedded", **zfs_settings("eve")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    dataset = f"{env['EVESNAP_ZFS_POOL']}/{env['EVESNAP_ZFS_PREFIX']}/volumes/{VOL}.0"
    snapshot = f"{dataset}@20260102-030405123"  # EVE's name: the time, no id
    zfs("create", "-p", dataset.rsplit("/", 1)[0])
    zfs("create", "-V", str(16 * MIB), "-o", "volblocksize=16K", "-o", "snapdev=visible", dataset)
    devices.wait_for_device(dataset)
    fill(f"/dev/zvol/{dataset}", 0xAA)
    zfs("snapshot", snapshot)
    fill(f"/dev/zvol/{dataset}", 0xEE)
    persist = tmp_path / "persist"
    write_eve_snapshot_folder(persist, SNAP, APP, "1", "shop", [VOL], meta={VOL: snapshot})

    session = open_session(persist, "embedded")
    orch = session.orchestrator

    def apply(**kwargs: object) -> None:
        data = Cli(tmp_path).config_data(activate=False, version="2", **kwargs)  # type: ignore[arg-type]
        for snap in data["apps"][0]["snapshot"]["snapshots"]:
            snap["type"] = "SNAPSHOT_TYPE_APP_UPDATE"
        orch.reconcile(parse_model(DeviceConfig, json.dumps(data).encode()))

    try:
        apply(snapshots=[SNAP])
        app = orch.app_report(orch.apps[uuid.UUID(APP)]).to_json_dict()
        assert [s["id"] for s in app["snapshots"]] == [SNAP], app
        assert not [e for e in app.get("appErr", []) if e["severity"] == "SEVERITY_ERROR"], app
        assert read(f"/dev/zvol/{dataset}") == 0xEE

        apply(snapshots=[SNAP], counter=1, active=SNAP)
        app = orch.app_report(orch.apps[uuid.UUID(APP)]).to_json_dict()
        assert app["appVersion"] == "1", app
        assert read(f"/dev/zvol/{dataset}") == 0xAA  # EVE's snapshot's bytes

        apply(snapshots=[], counter=1, active=SNAP)
        assert snapshot not in zfs("list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset)
        assert not (persist / "snapshots" / SNAP).exists()
    finally:
        orch.reconcile(DeviceConfig())

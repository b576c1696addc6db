"""A persist folder EVE itself wrote (one app-update snapshot, a qcow2 volume
with EVE's internal snapshot) is adopted: reported available, rolled back to,
deleted, nothing quarantined or orphaned. Apps stay halted: no QEMU."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.errors import StateError
from evesnap_core.state.eve_snapshots import read_eve_snapshot
from evesnap_core.testing.conformance.harness import qemu_io_read

from ..eve_fixtures import eve_tag, qcow2_tags, write_eve_snapshot_folder, write_eve_volume
from ..support import APP, MIB, VOL, Cli

SNAP = "6ba7b8c0-9dad-41d1-80b4-00c04fd430c8"
FILES = ("snapshotInstanceStatus.json", "volumesSnapshotStatus.json", "appInstanceConfig.json")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def eve_device(cli: Cli) -> Path:
    persist = cli.root / "persist"
    image = write_eve_volume(persist, VOL, 16 * MIB, before=0xAA, after=0xEE)
    write_eve_snapshot_folder(persist, SNAP, APP, "1", "shop", [VOL])
    return image


def apply(cli: Cli, **kwargs: object) -> None:
    path = cli.config(activate=False, version="2", **kwargs)  # type: ignore[arg-type]
    data = json.loads(path.read_text())
    for snap in data["apps"][0]["snapshot"]["snapshots"]:
        snap["type"] = "SNAPSHOT_TYPE_APP_UPDATE"
    path.write_text(json.dumps(data))
    out = cli("apply", str(path))
    assert out.returncode == 0, out.stderr


def test_eve_s_snapshot_is_adopted_rolled_back_to_and_deleted(cli: Cli) -> None:
    image = eve_device(cli)
    folder = cli.root / "persist" / "snapshots" / SNAP
    before = {name: (folder / name).read_bytes() for name in FILES}

    apply(cli, snapshots=[SNAP])
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    [reported] = app["snapshots"]
    assert reported["id"] == SNAP and reported["configVersion"] == "1" and "snapErr" not in reported
    assert reported["type"] == "SNAPSHOT_TYPE_APP_UPDATE"
    assert not any(e.get("severity") == "SEVERITY_ERROR" for e in app.get("appErr", [])), app
    assert not (cli.root / "persist" / "evesnap" / "quarantine").exists() or not any(
        (cli.root / "persist" / "evesnap" / "quarantine").iterdir()
    )
    assert {name: (folder / name).read_bytes() for name in FILES} == before  # EVE's files as EVE wrote them
    assert qemu_io_read(str(image), "qcow2", 0, MIB) == bytes([0xEE]) * MIB  # the volume was kept

    apply(cli, snapshots=[SNAP], counter=1, active=SNAP)  # the controller rolls back to it
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    assert app["appVersion"] == "1", app
    assert qemu_io_read(str(image), "qcow2", 0, MIB) == bytes([0xAA]) * MIB  # EVE's snapshot's bytes

    apply(cli, snapshots=[], counter=1, active=SNAP)  # the controller deletes it
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    assert app.get("snapshots", []) == []
    assert eve_tag(VOL) not in qcow2_tags(image)  # EVE's internal snapshot is gone, not orphaned
    assert not folder.exists()


def test_a_missing_mandatory_field_is_refused_as_eve_s_reader_refuses_it(tmp_path: Path) -> None:
    persist = tmp_path / "persist"
    folder = write_eve_snapshot_folder(persist, SNAP, APP, "1", "shop", [VOL])
    paths = tuple(str(folder / name) for name in FILES)
    raws = [Path(p).read_bytes() for p in paths]
    record, warnings = read_eve_snapshot(SNAP, raws, paths, persist)  # type: ignore[arg-type]
    assert record.state == "available" and record.config_version == "1"
    assert record.volumes[f"{VOL}#0"].info.name == eve_tag(VOL)
    assert warnings == []  # every field EVE writes is known
    assert record.app_config().volume_ref_list[0].uuid.hex == VOL.replace("-", "")

    status = json.loads(raws[0])
    del status["ConfigVersion"]
    with pytest.raises(StateError, match="Critical field ConfigVersion missing in stored data"):
        read_eve_snapshot(SNAP, [json.dumps(status).encode(), *raws[1:]], paths, persist)  # type: ignore[arg-type]
    status = json.loads(raws[0])
    status["Extra"] = 1
    del status["Reported"]
    _, warnings = read_eve_snapshot(SNAP, [json.dumps(status).encode(), *raws[1:]], paths, persist)  # type: ignore[arg-type]
    assert len(warnings) == 2 and "Extra" in warnings[0] and "Reported" in warnings[1]

"""A persist folder EVE itself wrote (one app-update snapshot, a qcow2 volume
with EVE's internal snapshot) is adopted: reported available, rolled back to,
deleted, nothing quarantined or orphaned. Apps stay halted: no QEMU."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest

from evesnap_core.errors import StateError
from evesnap_core.state.eve_snapshots import read_eve_snapshot
from evesnap_core.testing.conformance.harness import qemu_io_read

from ..eve_fixtures import eve_tag, qcow2_tags, write_eve_snapshot_folder, write_eve_volume
from ..support import APP, MIB, VOL, Cli

SNAP = "6ba7b8c0-9dad-41d1-80b4-00c04fd430c8"
FILES = ("snapshotInstanceStatus.json", "volumesSnapshotStatus.json", "appInstanceConfig.json")


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


# ------------------------------------------------------------ readable by EVE

UUID_TEXT = "uuid"
GO_TYPES: dict[str, dict[str, object]] = {
    # JSON types Go's encoding/json takes into each field of EVE's types (pkg/pillar/types)
    "snapshotInstanceStatus.json": {
        "Snapshot": {"SnapshotID": str, "SnapshotType": int},
        "Reported": bool,
        "TimeTriggered": (str, type(None)),
        "TimeCreated": (str, type(None)),
        "AppInstanceID": UUID_TEXT,
        "ConfigVersion": {"UUID": UUID_TEXT, "Version": str},
        "Error": (dict, type(None)),
    },
    "volumesSnapshotStatus.json": {
        "SnapshotID": str,
        "VolumeSnapshotMeta": dict,
        "TimeCreated": (str, type(None)),
        "AppUUID": UUID_TEXT,
        "RefCount": int,
        "ResultOfAction": int,
        "ErrorSourceType": str,
        "Error": str,
    },
    "appInstanceConfig.json": {
        "UUIDandVersion": {"UUID": UUID_TEXT, "Version": str},
        "DisplayName": str,
        "VolumeRefConfigList": [
            {
                "VolumeID": UUID_TEXT,
                "GenerationCounter": int,
                "LocalGenerationCounter": int,
                "AppUUID": UUID_TEXT,
                "MountDir": str,
                "VerifyOnly": bool,
            }
        ],
        "Activate": bool,
        "RestartCmd": {"Counter": int, "ApplyTime": str},
        "PurgeCmd": {"Counter": int, "ApplyTime": str},
        "Snapshot": {
            "ActiveSnapshot": str,
            "MaxSnapshots": int,
            "RollbackCmd": {"Counter": int, "ApplyTime": str},
            "Snapshots": [{"SnapshotID": str, "SnapshotType": int}],
        },
    },
}
_APP_CONFIG_FIELDS = (  # every field of types.AppInstanceConfig, for Go's case-insensitive match
    "UUIDandVersion DisplayName Errors FixedResources DisableLogs VolumeRefConfigList Activate "
    "AppNetAdapterList IoAdapterList RestartCmd PurgeCmd LocalRestartCmd LocalPurgeCmd RemoteConsole "
    "CollectStatsIPAddr CipherBlockID CipherContextID InitialValue ClearTextHash IsCipher CipherContext "
    "MetaDataType ProfileList Delay Service CloudInitVersion Snapshot AllowToDiscover IsDesignatedNodeID "
    "AffinityType DeploymentType ControllerBootOrder BootOrderSource Error ErrorTime ErrorSeverity "
    "ErrorRetryCondition ErrorEntities"
)
GO_FIELDS_OF_APP_CONFIG = _APP_CONFIG_FIELDS.split()


def go_decodes(value: object, go: object, where: str) -> None:
    """Raise where Go's json.Unmarshal into EVE's type would fail (a type mismatch)."""
    if go == UUID_TEXT:
        assert isinstance(value, str), where
        UUID(value)
    elif isinstance(go, dict):
        if value is None:
            return
        assert isinstance(value, dict), where
        known = {k.lower(): k for k in go}
        for key, item in value.items():
            if key in go:
                go_decodes(item, go[key], f"{where}.{key}")
            else:  # Go matches names case-insensitively: an extra must not land in a field
                assert key.lower() not in known, f"{where}.{key} would be read as {known[key.lower()]}"
    elif isinstance(go, list):
        if value is None:
            return
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            go_decodes(item, go[0], f"{where}[{i}]")
    elif go is int:
        assert isinstance(value, int) and not isinstance(value, bool), where
    else:
        assert isinstance(value, go), f"{where}: {value!r}"  # type: ignore[arg-type]


def test_a_folder_evesnap_writes_is_one_eve_s_reader_takes(cli: Cli) -> None:
    snap = "6ba7b8c1-9dad-41d1-80b4-00c04fd430c8"
    out = cli("apply", str(cli.config(activate=False, snapshots=[snap])))
    assert out.returncode == 0, out.stderr
    persist = cli.root / "persist"
    folder = persist / "snapshots" / snap
    paths = tuple(str(folder / name) for name in FILES)
    raws = [Path(p).read_bytes() for p in paths]
    for name, raw in zip(FILES, raws, strict=True):
        data = json.loads(raw)
        go_decodes(data, GO_TYPES[name], name)
    app_fields = {f.lower() for f in GO_FIELDS_OF_APP_CONFIG}
    for key in json.loads(raws[2]):
        assert key in GO_FIELDS_OF_APP_CONFIG or key.lower() not in app_fields, key

    # EVE's reader's rules (mandatory fields, the app found by UUIDandVersion, each
    # volume's snapshot by its name), as evesnap's adoption of EVE's folders applies them
    record, _ = read_eve_snapshot(snap, raws, paths, persist)  # type: ignore[arg-type]
    assert record.app == UUID(APP) and record.config_version == "1"
    [(volume, tag)] = json.loads(raws[1])["VolumeSnapshotMeta"].items()
    assert volume == VOL and tag in qcow2_tags(persist / "vault" / "volumes" / f"{VOL}#0.qcow2")
    assert record.volumes[f"{VOL}#0"].info.name == tag  # the name EVE's file handler applies

"""A persist folder as EVE itself leaves it after one app-update snapshot.

The three files are what Go's encoding/json writes for lf-edge/eve's types
(pkg/pillar/types: zedmanagertypes.go, volumetypes.go, errortime.go,
cipherinfotypes.go): every exported field under its Go name in struct order,
embedded structs' fields promoted, uuid.UUID as text, time.Time in RFC 3339
(zero: 0001-01-01T00:00:00Z), nil slices and pointers as null, enums as
numbers, no schema version. The qcow2 volume carries EVE's internal snapshot
``<volume>#<generation>-snapshot-YYYYmmddHHMMSS`` (volumehandlers/filehandler.go).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

GO_ZERO = "0001-01-01T00:00:00Z"
CREATED = "2026-01-02T03:04:05.123456789Z"
TAG_TIME = "20260102030405"  # Go's 20060102150405 layout of CREATED


def eve_tag(volume: str, generation: int = 0) -> str:
    return f"{volume}#{generation}-snapshot-{TAG_TIME}"


def _error_description() -> dict[str, Any]:  # types.ErrorDescription, zero
    return {
        "Error": "",
        "ErrorTime": GO_ZERO,
        "ErrorSeverity": 0,
        "ErrorRetryCondition": "",
        "ErrorEntities": None,
    }


def _ops_cmd(counter: int = 0) -> dict[str, Any]:  # types.AppInstanceOpsCmd
    return {"Counter": counter, "ApplyTime": ""}


def snapshot_instance_status(snap: str, app: str, version: str) -> dict[str, Any]:
    return {  # types.SnapshotInstanceStatus
        "Snapshot": {"SnapshotID": snap, "SnapshotType": 1},  # SnapshotTypeAppUpdate
        "Reported": True,
        "TimeTriggered": CREATED,
        "TimeCreated": CREATED,
        "AppInstanceID": app,
        "ConfigVersion": {"UUID": app, "Version": version},
        "Error": _error_description(),
    }


def volumes_snapshot_status(
    snap: str, app: str, volumes: list[str], meta: dict[str, str] | None = None
) -> dict[str, Any]:
    return {  # types.VolumesSnapshotStatus (ErrorAndTimeWithSource promoted)
        "SnapshotID": snap,
        "VolumeSnapshotMeta": meta or {v: eve_tag(v) for v in volumes},
        "TimeCreated": CREATED,
        "AppUUID": app,
        "RefCount": 1,
        "ResultOfAction": 1,  # VolumesSnapshotCreate
        "ErrorSourceType": "",
        **_error_description(),
    }


def app_instance_config(app: str, version: str, name: str, volumes: list[str], snap: str) -> dict[str, Any]:
    return {  # types.AppInstanceConfig, the config before the update
        "UUIDandVersion": {"UUID": app, "Version": version},
        "DisplayName": name,
        "Errors": None,
        "FixedResources": {"Kernel": "", "Memory": 1024, "MaxMem": 0, "VCpus": 1, "MaxCpus": 0},
        "DisableLogs": False,
        "VolumeRefConfigList": [
            {
                "VolumeID": v,
                "GenerationCounter": 0,
                "LocalGenerationCounter": 0,
                "AppUUID": app,
                "MountDir": "",
                "VerifyOnly": False,
            }
            for v in volumes
        ],
        "Activate": False,
        "AppNetAdapterList": None,
        "IoAdapterList": None,
        "RestartCmd": _ops_cmd(),
        "PurgeCmd": _ops_cmd(),
        "LocalRestartCmd": _ops_cmd(),
        "LocalPurgeCmd": _ops_cmd(),
        "pubsub-large-CloudInitUserData": None,
        "RemoteConsole": False,
        "CollectStatsIPAddr": "",
        "CipherBlockID": "",  # CipherBlockStatus promoted, with its ErrorAndTime
        "CipherContextID": "",
        "InitialValue": None,
        "pubsub-large-CipherData": None,
        "ClearTextHash": None,
        "IsCipher": False,
        "CipherContext": None,
        **_error_description(),
        "MetaDataType": 0,
        "ProfileList": None,
        "Delay": 0,
        "Service": False,
        "CloudInitVersion": 0,
        "Snapshot": {
            "ActiveSnapshot": "",
            "MaxSnapshots": 1,
            "RollbackCmd": _ops_cmd(),
            "Snapshots": [{"SnapshotID": snap, "SnapshotType": 1}],
        },
        "AllowToDiscover": False,
        "IsDesignatedNodeID": False,
        "AffinityType": 0,
        "DeploymentType": 0,
        "ControllerBootOrder": 0,
        "BootOrderSource": 0,
    }


def write_eve_snapshot_folder(
    persist: Path,
    snap: str,
    app: str,
    version: str,
    name: str,
    volumes: list[str],
    meta: dict[str, str] | None = None,
) -> Path:
    """`meta`: VolumeSnapshotMeta when not qcow2 tags (ZFS: the full snapshot path)."""
    folder = persist / "snapshots" / snap
    folder.mkdir(parents=True)
    files = {
        "snapshotInstanceStatus.json": snapshot_instance_status(snap, app, version),
        "volumesSnapshotStatus.json": volumes_snapshot_status(snap, app, volumes, meta),
        "appInstanceConfig.json": app_instance_config(app, version, name, volumes, snap),
    }
    for file_name, data in files.items():
        (folder / file_name).write_text(json.dumps(data))
    return folder


def write_eve_volume(persist: Path, volume: str, size: int, before: int, after: int) -> Path:
    """<persist>/vault/volumes/<uuid>#0.qcow2 holding `before` in EVE's internal
    snapshot and `after` now (the first MiB filled with the byte)."""
    image = persist / "vault" / "volumes" / f"{volume}#0.qcow2"
    image.parent.mkdir(parents=True, exist_ok=True)

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    run("qemu-img", "create", "-q", "-f", "qcow2", str(image), str(size))
    run("qemu-io", "-f", "qcow2", "-c", f"write -P {before} 0 1M", str(image))
    run("qemu-img", "snapshot", "-c", eve_tag(volume), str(image))
    run("qemu-io", "-f", "qcow2", "-c", f"write -P {after} 0 1M", str(image))
    return image


def qcow2_tags(image: Path) -> list[str]:
    out = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", str(image)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line.split()[1] for line in out.stdout.splitlines()[2:] if line.strip()]

"""Snapshot folders that EVE itself wrote, read as EVE's Go code writes them.

A device that ran EVE before evesnap holds ``<persist>/snapshots/<id>/`` with
EVE's three files, written by Go's ``encoding/json`` from lf-edge/eve's
``pkg/pillar/types``: Go field names, no ``SchemaVersion``, ``ConfigVersion``
an object ``{UUID, Version}``, ``VolumeSnapshotMeta`` keyed by the volume UUID
with the backend's own name as the value (a qcow2 internal snapshot
``<volume>#<generation>-snapshot-YYYYmmddHHMMSS``, a ZFS snapshot path), and
``appInstanceConfig.json`` the Go ``types.AppInstanceConfig``. evesnap adopts
such a folder instead of setting it aside: the snapshot is available, the
controller can roll back to it and delete it, and each volume's part names the
backend's own snapshot by the id the backend lists it under (its own name), so
nothing EVE left is orphaned.

As EVE's reader does: a missing mandatory field (``SnapshotInstanceStatus``:
Snapshot, AppInstanceID, ConfigVersion; ``VolumesSnapshotStatus``: SnapshotID,
VolumeSnapshotMeta, AppUUID) refuses the folder ("Critical field X missing in
stored data in FILE"); an unknown or missing optional field is a warning.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from evesnap_core.errors import StateError
from evesnap_core.handler_types import SnapshotInfo, VolumeHandle
from evesnap_core.model.config import SnapshotType
from evesnap_core.records import ADOPTED_META, Problem, SnapshotRecord, VolumeSnapshot
from evesnap_core.state.stored import MAX_STATE_DEPTH, too_deep

SNAPSHOT_INSTANCE_STATUS = {
    "mandatory": ("Snapshot", "AppInstanceID", "ConfigVersion"),
    "optional": ("Reported", "TimeTriggered", "TimeCreated", "Error"),
}
VOLUMES_SNAPSHOT_STATUS = {
    "mandatory": ("SnapshotID", "VolumeSnapshotMeta", "AppUUID"),
    "optional": (
        "TimeCreated", "RefCount", "ResultOfAction", "ErrorSourceType", "Error", "ErrorTime",
        "ErrorSeverity", "ErrorRetryCondition", "ErrorEntities",
    ),
}  # fmt: skip
"""Go struct fields of pkg/pillar/types (zedmanagertypes.go, volumetypes.go), in order."""

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_QCOW2_TAG = re.compile(r"(?P<uuid>[0-9a-fA-F-]{36})#(?P<gen>[0-9]+)-snapshot-.+")
"""EVE's tags end in a timestamp; evesnap's (which EVE's file handler applies the same way) in an id."""
_ZFS_PATH = re.compile(r"(?P<dataset>.*/(?P<uuid>[0-9a-fA-F-]{36})\.(?P<gen>[0-9]+))@.+")


def is_eve_written(raw_status: bytes) -> bool:
    """EVE's snapshotInstanceStatus.json: a JSON object with a ``Snapshot`` and no
    ``SchemaVersion`` (which every file evesnap writes carries)."""
    if too_deep(raw_status):  # parsed below by json: bounded first, like every state file
        return False
    try:
        data = json.loads(raw_status)
    except ValueError:
        return False
    return isinstance(data, dict) and "SchemaVersion" not in data and "Snapshot" in data


def _object(raw: bytes, where: str) -> dict[str, Any]:
    if too_deep(raw):
        raise StateError(where, f"nested more than {MAX_STATE_DEPTH} levels deep")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateError(where, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StateError(where, "not a JSON object")
    return data


def _check(data: dict[str, Any], fields: dict[str, tuple[str, ...]], where: str, warnings: list[str]) -> None:
    for name in fields["mandatory"]:
        if data.get(name) is None:
            raise StateError(where, f"Critical field {name} missing in stored data")
    known = set(fields["mandatory"]) | set(fields["optional"])
    for name in data:
        if name not in known:
            warnings.append(f"{where}: unknown field {name} (kept by EVE's reader as a warning too)")
    for name in fields["optional"]:
        if name not in data:
            warnings.append(f"{where}: optional field {name} missing")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _uuid(value: Any, field: str, where: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise StateError(where, f"field {field}: {value!r} is not a UUID") from None


def _part(volume_id: str, meta: Any, created: datetime, persist: Path, where: str) -> VolumeSnapshot:
    """One volume's snapshot from EVE's metadata: its backend, volume generation and own name."""
    name = meta if isinstance(meta, str) else ""
    qcow2 = _QCOW2_TAG.fullmatch(name)
    zfs = _ZFS_PATH.fullmatch(name)
    if qcow2 is not None:
        uuid, gen = UUID(qcow2["uuid"]), int(qcow2["gen"])
        image = f"{uuid}#{gen}.qcow2"
        location = persist / "vault" / "volumes" / image
        if not location.exists() and (persist / "clear" / "volumes" / image).exists():
            location = persist / "clear" / "volumes" / image
        handle = VolumeHandle(
            uuid=uuid, generation=gen, backend="qcow2", format="qcow2", location=str(location)
        )
    elif zfs is not None:
        uuid, gen = UUID(zfs["uuid"]), int(zfs["gen"])
        handle = VolumeHandle(
            uuid=uuid, generation=gen, backend="zfs", format="zvol", location=zfs["dataset"]
        )
    else:
        raise StateError(
            where, f"VolumeSnapshotMeta[{volume_id}]: {meta!r} is neither a qcow2 nor a ZFS snapshot"
        )
    if str(uuid) != str(_uuid(volume_id, "VolumeSnapshotMeta", where)):
        raise StateError(where, f"VolumeSnapshotMeta[{volume_id}] names another volume ({name})")
    # the backend lists a snapshot it did not make under its own name: that is its id there
    info = SnapshotInfo(
        snapshot_id=name, name=name, volume=uuid, generation=gen, created=created, meta={ADOPTED_META: "eve"}
    )
    return VolumeSnapshot(handle=handle, info=info)


def go_app_config_to_proto(go: dict[str, Any]) -> dict[str, Any]:
    """EVE's Go ``types.AppInstanceConfig`` as the proto3 JSON of eve-api's
    AppInstanceConfig (the fields evesnap acts on; the Go original is kept
    under ``evesnapEveConfig``)."""

    def cmd(value: Any) -> dict[str, Any]:
        return {"counter": int((value or {}).get("Counter") or 0)}

    ids = go.get("UUIDandVersion") or {}
    snap = go.get("Snapshot") or {}
    return {
        "uuidandversion": {"uuid": str(ids.get("UUID", "")), "version": str(ids.get("Version", ""))},
        "displayname": str(go.get("DisplayName") or ""),
        "activate": bool(go.get("Activate")),
        "restart": cmd(go.get("RestartCmd")),
        "purge": cmd(go.get("PurgeCmd")),
        "volumeRefList": [
            {
                "uuid": str(ref.get("VolumeID", "")),
                "generationCount": str(int(ref.get("GenerationCounter") or 0)),
                "mount_dir": str(ref.get("MountDir") or ""),
            }
            for ref in go.get("VolumeRefConfigList") or []
        ],
        "snapshot": {
            "activeSnapshot": str(snap.get("ActiveSnapshot") or ""),
            "maxSnapshots": int(snap.get("MaxSnapshots") or 0),
            "rollbackCmd": cmd(snap.get("RollbackCmd")),
            "snapshots": [
                {"id": str(d.get("SnapshotID", "")), "type": int(d.get("SnapshotType") or 0)}
                for d in snap.get("Snapshots") or []
            ],
        },
        "evesnapEveConfig": go,
    }


def read_eve_snapshot(
    name: str, raws: list[bytes], paths: tuple[str, str, str], persist: Path
) -> tuple[SnapshotRecord, list[str]]:
    """The snapshot of an EVE-written folder (`raws`: its status, volumes and
    config files) and the warnings its reading gave; StateError when EVE's own
    reader would refuse it."""
    warnings: list[str] = []
    status = _object(raws[0], paths[0])
    _check(status, SNAPSHOT_INSTANCE_STATUS, paths[0], warnings)
    volumes = _object(raws[1], paths[1])
    _check(volumes, VOLUMES_SNAPSHOT_STATUS, paths[1], warnings)
    go_config = _object(raws[2], paths[2])

    desc = status["Snapshot"]
    if not isinstance(desc, dict) or desc.get("SnapshotID") != name or volumes["SnapshotID"] != name:
        raise StateError(paths[0], f"the files name another snapshot than {name}")
    app = _uuid(status["AppInstanceID"], "AppInstanceID", paths[0])
    config_version = status["ConfigVersion"]
    if not isinstance(config_version, dict):
        raise StateError(paths[0], "field ConfigVersion: not a UUIDandVersion object")
    config_app = (go_config.get("UUIDandVersion") or {}).get("UUID")
    if (
        _uuid(volumes["AppUUID"], "AppUUID", paths[1]) != app
        or _uuid(config_app, "UUIDandVersion", paths[2]) != app
    ):
        raise StateError(paths[0], "the files name different apps")
    meta = volumes["VolumeSnapshotMeta"]
    if not isinstance(meta, dict) or not meta:
        raise StateError(paths[1], "field VolumeSnapshotMeta: no volume")
    try:
        kind = SnapshotType(int(desc.get("SnapshotType") or 0))
    except ValueError:
        kind = SnapshotType.SNAPSHOT_TYPE_UNSPECIFIED
        warnings.append(
            f"{paths[0]}: SnapshotType {desc.get('SnapshotType')!r} unknown; taken as unspecified"
        )
    created = _time(status.get("TimeCreated")) or _time(volumes.get("TimeCreated"))
    when = created or _time(status.get("TimeTriggered")) or datetime.now(UTC)
    parts = {}
    for volume_id, value in sorted(meta.items()):
        part = _part(volume_id, value, when, persist, paths[1])
        parts[part.handle.key] = part
    error = status.get("Error") or {}
    problem = None
    if isinstance(error, dict) and error.get("Error"):
        problem = Problem(description=str(error["Error"]), time=_time(error.get("ErrorTime")) or when)
    config = go_app_config_to_proto(go_config)
    record = SnapshotRecord(
        id=name,
        app=app,
        type=kind,
        state="available",
        origin="controller",
        requested=_time(status.get("TimeTriggered")) or when,
        created=when,
        error=problem,
        config_id=_uuid(config_version.get("UUID") or app, "ConfigVersion.UUID", paths[0]),
        config_version=str(config_version.get("Version") or ""),
        config_json=json.dumps(config, sort_keys=True),
        volume_keys=sorted(parts),
        volumes=parts,
    )
    return record, warnings

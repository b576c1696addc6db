"""The state files, one model each.

Snapshot folders follow the reference (``<persist>/snapshots/<snapshotID>/``):

- ``appInstanceConfig.json``: the app's config the snapshot restores;
- ``volumesSnapshotStatus.json``: each volume's backend snapshot
  (the reference's ``VolumeSnapshotMeta``);
- ``snapshotInstanceStatus.json``: the snapshot itself, its state (a pending
  deletion is recorded here and survives a reboot), parent and error.

The reference's mandatory fields are mandatory here too, with the reference's
names and JSON types (schema 2), so that EVE's own reader accepts a folder
evesnap wrote (a device rolled back to an EVE image keeps its snapshots):
``ConfigVersion`` is EVE's ``{UUID, Version}``, ``VolumeSnapshotMeta`` maps each
volume UUID to the backend's own name of its snapshot (a qcow2 tag, which EVE's
file handler applies and deletes by name), and ``appInstanceConfig.json``
carries the Go ``types.AppInstanceConfig`` fields EVE matches and restores
(``UUIDandVersion``, ``DisplayName``, ``VolumeRefConfigList``, ``Activate``,
``RestartCmd``, ``PurgeCmd``, ``Snapshot``) beside evesnap's own. evesnap's
additions are extra fields, which EVE's reader warns about and ignores
(``EvesnapVolumes``: each volume's full record). What the reference
lacks lives under ``<persist>/evesnap/``: per-app state (the last rollback
counter seen, the current snapshot, a rollback under way), volumes, the last
device config and the intent journal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import Field

from evesnap_core.handler_types import ReadOnlyExport
from evesnap_core.model.config import DeviceConfig, SnapshotType
from evesnap_core.records import (
    AppRecord,
    Consistency,
    Problem,
    SnapshotOrigin,
    SnapshotRecord,
    SnapshotState,
    VolumeRecord,
    VolumeSnapshot,
)
from evesnap_core.state.stored import StoredFile, StoredModel

APP_CONFIG = "appInstanceConfig.json"
VOLUMES_STATUS = "volumesSnapshotStatus.json"
SNAPSHOT_STATUS = "snapshotInstanceStatus.json"
SNAPSHOT_FILES = (APP_CONFIG, VOLUMES_STATUS, SNAPSHOT_STATUS)


class SnapshotDescription(StoredModel):
    snapshot_id: str = Field(alias="SnapshotID")
    snapshot_type: SnapshotType = Field(alias="SnapshotType")
    display_name: str = Field("", alias="DisplayName")


class StoredUUIDandVersion(StoredModel):
    """EVE's ``types.UUIDandVersion``."""

    uuid: UUID = Field(alias="UUID")
    version: str = Field("", alias="Version")


def _config_version_object(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: ConfigVersion was the version string; EVE's is {UUID, Version}."""
    version = data.get("ConfigVersion")
    if isinstance(version, str):
        data["ConfigVersion"] = {"UUID": data.get("AppInstanceID"), "Version": version}
    return data


def _consistency(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 -> 3: every snapshot taken before evesnap recorded consistency
    levels was taken without freezing the guest: crash-consistent."""
    data.setdefault("Consistency", "crash-consistent")
    data.setdefault("ConsistencyDetail", "taken before evesnap recorded consistency levels")
    data.setdefault("LiveSnapshotMilliseconds", None)
    return data


class SnapshotInstanceStatus(StoredFile):
    SCHEMA = 3
    MIGRATIONS = {1: _config_version_object, 2: _consistency}

    snapshot: SnapshotDescription = Field(alias="Snapshot")
    app_instance_id: UUID = Field(alias="AppInstanceID")
    config_version: StoredUUIDandVersion = Field(alias="ConfigVersion")
    state: SnapshotState = Field("available", alias="State")
    origin: SnapshotOrigin = Field("controller", alias="Origin")
    time_triggered: datetime | None = Field(None, alias="TimeTriggered")
    time_created: datetime | None = Field(None, alias="TimeCreated")
    parent: str | None = Field(None, alias="Parent")
    error: Problem | None = Field(None, alias="Error")
    exports: dict[str, ReadOnlyExport] = Field(default_factory=dict, alias="Exports")
    """Volumes exposed read-only until closed (evesnap snapshot open)."""
    consistency: Consistency = Field("crash-consistent", alias="Consistency")
    consistency_detail: str = Field("", alias="ConsistencyDetail")
    live_snapshot_ms: int | None = Field(None, alias="LiveSnapshotMilliseconds")


class VolumeSnapshotMeta(StoredModel):
    volume: VolumeSnapshot = Field(alias="Volume")


def eve_volume_meta(volumes: dict[str, VolumeSnapshot]) -> dict[str, str]:
    """EVE's VolumeSnapshotMeta: volume UUID -> the backend's own name of its snapshot."""
    return {str(v.handle.uuid): v.info.name for _, v in sorted(volumes.items())}


def _eve_volume_meta(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: evesnap's per-volume records move to EvesnapVolumes;
    VolumeSnapshotMeta becomes EVE's {volume UUID: backend name}."""
    records = data.pop("VolumeSnapshotMeta", None)
    if isinstance(records, dict):
        data["EvesnapVolumes"] = records
        meta: dict[str, Any] = {}
        for key, record in records.items():
            volume = record.get("Volume") if isinstance(record, dict) else None
            info = volume.get("info") if isinstance(volume, dict) else None
            name = info.get("name") if isinstance(info, dict) else None
            meta[str(key).split("#", 1)[0]] = name if isinstance(name, str) else ""
        data["VolumeSnapshotMeta"] = meta
    return data


class VolumesSnapshotStatus(StoredFile):
    SCHEMA = 2
    MIGRATIONS = {1: _eve_volume_meta}

    snapshot_id: str = Field(alias="SnapshotID")
    volume_snapshot_meta: dict[str, str] = Field(alias="VolumeSnapshotMeta")
    """EVE's: volume UUID -> the backend's own name of its snapshot."""
    app_uuid: UUID = Field(alias="AppUUID")
    evesnap_volumes: dict[str, VolumeSnapshotMeta] = Field(alias="EvesnapVolumes")
    """evesnap's: each volume's (uuid#generation) full record."""
    volume_keys: list[str] = Field(default_factory=list, alias="VolumeKeys")


def go_app_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The Go ``types.AppInstanceConfig`` fields EVE matches a snapshot by and
    restores, from the proto3 JSON config (EVE's own, when the snapshot came
    from EVE and kept it under ``evesnapEveConfig``)."""
    original = config.get("evesnapEveConfig")
    if isinstance(original, dict):
        return {name: original.get(name) for name in GO_APP_FIELDS if name in original}

    def cmd(value: Any) -> dict[str, Any]:
        counter = value.get("counter", 0) if isinstance(value, dict) else 0
        return {"Counter": int(counter or 0), "ApplyTime": ""}

    ids = config.get("uuidandversion") or {}
    snap = config.get("snapshot") or {}
    app = ids.get("uuid", "")
    return {
        "UUIDandVersion": {"UUID": app, "Version": ids.get("version", "")},
        "DisplayName": config.get("displayname", ""),
        "VolumeRefConfigList": [
            {
                "VolumeID": ref.get("uuid", ""),
                "GenerationCounter": int(ref.get("generationCount", 0) or 0),
                "LocalGenerationCounter": 0,
                "AppUUID": app,
                "MountDir": ref.get("mountDir", ref.get("mount_dir", "")),
                "VerifyOnly": False,
            }
            for ref in config.get("volumeRefList") or []
        ],
        "Activate": bool(config.get("activate", False)),
        "RestartCmd": cmd(config.get("restart")),
        "PurgeCmd": cmd(config.get("purge")),
        "Snapshot": {
            "ActiveSnapshot": snap.get("activeSnapshot", ""),
            "MaxSnapshots": int(snap.get("maxSnapshots", 0) or 0),
            "RollbackCmd": cmd(snap.get("rollbackCmd")),
            "Snapshots": [
                {"SnapshotID": d.get("id", ""), "SnapshotType": _type_number(d.get("type"))}
                for d in snap.get("snapshots") or []
            ],
        },
    }


GO_APP_FIELDS = (
    "UUIDandVersion", "DisplayName", "VolumeRefConfigList", "Activate", "RestartCmd", "PurgeCmd", "Snapshot",
)  # fmt: skip


def _type_number(value: Any) -> int:
    if isinstance(value, str):
        member = SnapshotType.__members__.get(value)
        return int(member) if member is not None else 0
    return int(value or 0)


def _go_app_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: the Go AppInstanceConfig fields beside evesnap's own."""
    config = data.get("Config")
    if isinstance(config, dict):
        for name, value in go_app_fields(config).items():
            data.setdefault(name, value)
    return data


class AppInstanceConfigFile(StoredFile):
    SCHEMA = 2
    MIGRATIONS = {1: _go_app_fields}

    app_instance_id: UUID = Field(alias="AppInstanceID")
    config_id: UUID = Field(alias="ConfigID")
    config_version: str = Field(alias="ConfigVersion")
    config: dict[str, Any] = Field(alias="Config")
    """The AppInstanceConfig in proto3 JSON; validated when a rollback needs it."""
    # EVE's Go types.AppInstanceConfig, for EVE's reader (evesnap reads Config)
    uuid_and_version: dict[str, Any] | None = Field(None, alias="UUIDandVersion")
    display_name: str | None = Field(None, alias="DisplayName")
    volume_ref_config_list: list[dict[str, Any]] | None = Field(None, alias="VolumeRefConfigList")
    activate: bool | None = Field(None, alias="Activate")
    restart_cmd: dict[str, Any] | None = Field(None, alias="RestartCmd")
    purge_cmd: dict[str, Any] | None = Field(None, alias="PurgeCmd")
    snapshot: dict[str, Any] | None = Field(None, alias="Snapshot")


class SnapshotFacts(StoredModel):
    """What one snapshot folder held when evesnap last wrote (or read) it: its
    record, and how to tell, without reading them, that its files are unchanged.

    `stamp` is the folder's (inode, mtime, ctime) then, for each of
    `STAMPED_FILES`, (inode, size, mtime, ctime), all in nanoseconds: every
    write evesnap or EVE makes in the folder renames a new file into it (a new
    inode; the folder's times change, as they do when a temporary file is left
    there), and a file changed in place changes its own times. `digests` are
    the files' BLAKE2b-128 (hex), so that an unchanged record is not written
    again after a restart either."""

    stamp: tuple[int, ...] = Field(alias="Stamp")
    digests: tuple[str, ...] = Field(alias="Digests")
    record: SnapshotRecord = Field(alias="Record")


STAMPED_FILES = (SNAPSHOT_STATUS, VOLUMES_STATUS, APP_CONFIG)
"""The order of the files in `SnapshotFacts.stamp` and `digests` (the order they are read in)."""


def _snapshot_facts(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: no facts yet (every snapshot folder is read in full once more)."""
    if not isinstance(data.get("Snapshots"), dict):
        data["Snapshots"] = {}
    return data


class AppState(StoredFile):
    """evesnap/apps/<uuid>.json: the app record without its snapshots, and the facts
    of each of its snapshot folders (schema 2), so that a restart reads a folder
    only when it changed since."""

    SCHEMA = 2
    MIGRATIONS = {1: _snapshot_facts}

    app_instance_id: UUID = Field(alias="AppInstanceID")
    app: AppRecord = Field(alias="App")
    snapshots: dict[str, SnapshotFacts] = Field(default_factory=dict, alias="Snapshots")
    """Snapshot id -> its folder's facts; a folder that is not there, or whose
    stamp differs, is read in full (the folders are the record, these a cache)."""


class VolumeState(StoredFile):
    """evesnap/volumes/<hash>.json: one volume generation."""

    volume: VolumeRecord = Field(alias="Volume")


class DeviceState(StoredFile):
    """evesnap/device.json: the last device config applied."""

    config: DeviceConfig = Field(alias="Config")


class Intent(StoredFile):
    """evesnap/journal/<id>.json: a multi-step operation begun and not yet resolved."""

    kind: str = Field(alias="Kind")
    app_instance_id: UUID = Field(alias="AppInstanceID")
    snapshot_id: str = Field(alias="SnapshotID")
    details: dict[str, str] = Field(default_factory=dict, alias="Details")
    time: datetime | None = Field(None, alias="Time")


class QuarantineNote(StoredFile):
    """Beside what was moved aside: why, and whose it was (reported until removed)."""

    reason: str = Field(alias="Reason")
    original: str = Field(alias="Original")
    app_instance_id: UUID | None = Field(None, alias="AppInstanceID")
    snapshot_id: str | None = Field(None, alias="SnapshotID")
    time: datetime | None = Field(None, alias="Time")

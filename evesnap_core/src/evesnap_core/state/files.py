"""The state files, one model each.

Snapshot folders follow the reference (``<persist>/snapshots/<snapshotID>/``):

- ``appInstanceConfig.json``: the app's config the snapshot restores;
- ``volumesSnapshotStatus.json``: each volume's backend snapshot
  (the reference's ``VolumeSnapshotMeta``);
- ``snapshotInstanceStatus.json``: the snapshot itself, its state (a pending
  deletion is recorded here and survives a reboot), parent and error.

The reference's mandatory fields are mandatory here too. What the reference
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
    Problem,
    SnapshotOrigin,
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


class SnapshotInstanceStatus(StoredFile):
    snapshot: SnapshotDescription = Field(alias="Snapshot")
    app_instance_id: UUID = Field(alias="AppInstanceID")
    config_version: str = Field(alias="ConfigVersion")
    state: SnapshotState = Field("available", alias="State")
    origin: SnapshotOrigin = Field("controller", alias="Origin")
    time_triggered: datetime | None = Field(None, alias="TimeTriggered")
    time_created: datetime | None = Field(None, alias="TimeCreated")
    parent: str | None = Field(None, alias="Parent")
    error: Problem | None = Field(None, alias="Error")
    exports: dict[str, ReadOnlyExport] = Field(default_factory=dict, alias="Exports")
    """Volumes exposed read-only until closed (evesnap snapshot open)."""


class VolumeSnapshotMeta(StoredModel):
    volume: VolumeSnapshot = Field(alias="Volume")


class VolumesSnapshotStatus(StoredFile):
    snapshot_id: str = Field(alias="SnapshotID")
    volume_snapshot_meta: dict[str, VolumeSnapshotMeta] = Field(alias="VolumeSnapshotMeta")
    app_uuid: UUID = Field(alias="AppUUID")
    volume_keys: list[str] = Field(default_factory=list, alias="VolumeKeys")


class AppInstanceConfigFile(StoredFile):
    app_instance_id: UUID = Field(alias="AppInstanceID")
    config_id: UUID = Field(alias="ConfigID")
    config_version: str = Field(alias="ConfigVersion")
    config: dict[str, Any] = Field(alias="Config")
    """The AppInstanceConfig in proto3 JSON; validated when a rollback needs it."""


class AppState(StoredFile):
    """evesnap/apps/<uuid>.json: the app record without its snapshots."""

    app_instance_id: UUID = Field(alias="AppInstanceID")
    app: AppRecord = Field(alias="App")


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

"""The domain records: what evesnap knows about each app, volume and snapshot.

A module of its own, below everything that uses it: the orchestrator keeps these
records as its working memory, the state store (`evesnap_core.state`) persists
them (the snapshot folders of the reference plus per-app state) so that they are
rebuilt exactly after a restart, and the policy reads them to plan. None of those
imports another to reach them; the store never imports the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from evesnap_core.handler_types import ReadOnlyExport, SnapshotInfo, VolumeHandle, VolumeSpec
from evesnap_core.model.config import AppInstanceConfig, SnapshotType
from evesnap_core.model.info import ErrorInfo, Severity


def utcnow() -> datetime:
    return datetime.now(UTC)


class Problem(BaseModel):
    """An error or warning to report, with when it happened."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    description: str
    time: datetime = Field(default_factory=utcnow)
    severity: Literal["error", "warning"] = "error"

    def to_error_info(self) -> ErrorInfo:
        return ErrorInfo(
            description=self.description,
            timestamp=self.time,
            severity=Severity.SEVERITY_ERROR if self.severity == "error" else Severity.SEVERITY_WARNING,
        )


@dataclass(frozen=True)
class Damaged:
    """Stored state that could not be read: reported on its app and snapshot until removed."""

    description: str
    app: UUID | None = None
    snapshot: str | None = None


VolumeState = Literal["ready", "error"]


class VolumeRecord(BaseModel):
    """One generation of one volume."""

    model_config = ConfigDict(defer_build=True)

    spec: VolumeSpec
    handle: VolumeHandle | None = None
    state: VolumeState = "ready"
    error: Problem | None = None
    created: datetime = Field(default_factory=utcnow)
    origin: Literal["controller", "clone"] = "controller"
    cloned_from: str | None = None
    """For a clone: ``<app uuid>@<snapshot id>/<volume key>``."""
    clone_owner: str | None = None
    """The cloned app, or the batch of cloned volumes, this volume was made for."""

    @property
    def key(self) -> str:
        return self.spec.key


ADOPTED_META = "adopted-from"
"""SnapshotInfo.meta key of a volume snapshot evesnap did not make (EVE's, value
``eve``): its backend knows it by its own name, the id it lists it under, not by
the app-level snapshot id."""


class VolumeSnapshot(BaseModel):
    """One volume's part of an app snapshot (the reference's VolumeSnapshotMeta)."""

    model_config = ConfigDict(defer_build=True)

    handle: VolumeHandle
    info: SnapshotInfo
    retired: bool = False
    """The volume generation was retired by a purge and is kept only for this snapshot."""


SnapshotState = Literal["requested", "available", "deleting"]
Consistency = Literal["crash-consistent", "filesystem-consistent"]
"""What a snapshot's volumes hold: the state a power cut would leave
(``crash-consistent``: every snapshot not taken with the guest's filesystems
frozen), or filesystems frozen by the guest agent (``filesystem-consistent``)."""
SnapshotOrigin = Literal["controller", "local", "schedule"]


class SnapshotRecord(BaseModel):
    """One app snapshot, from request to deletion."""

    model_config = ConfigDict(defer_build=True)

    id: str
    app: UUID
    type: SnapshotType
    state: SnapshotState = "requested"
    origin: SnapshotOrigin = "controller"
    requested: datetime = Field(default_factory=utcnow)
    created: datetime | None = None
    config_id: UUID
    config_version: str
    config_json: str
    """The app's config when the snapshot was requested (pre-update for app
    updates), in proto3 JSON: parsed only when a rollback needs it, so that a
    restart with thousands of snapshots reads fast."""
    volume_keys: list[str] = Field(default_factory=list)
    """The app's volumes (uuid#generation) when it was requested: what is snapshotted."""
    volumes: dict[str, VolumeSnapshot] = Field(default_factory=dict)
    parent: str | None = None
    display_name: str = ""
    error: Problem | None = None
    exports: dict[str, ReadOnlyExport] = Field(default_factory=dict)
    """Volumes exposed read-only (evesnap snapshot open), until closed."""
    consistency: Consistency = "crash-consistent"
    consistency_detail: str = ""
    """Why: how long the guest was frozen, or why it was not (no agent, no answer)."""
    live_snapshot_ms: int | None = None
    """How long the live snapshot call took (None: taken offline): QEMU runs it in
    its main loop, and the guest's I/O to the volumes waits about as long."""

    @classmethod
    def of_config(cls, config: AppInstanceConfig, **fields: object) -> SnapshotRecord:
        return cls(
            config_id=config.uuid,
            config_version=config.version,
            config_json=config.model_dump_json(by_alias=True, exclude_none=True),
            **fields,
        )

    def app_config(self) -> AppInstanceConfig:
        return AppInstanceConfig.model_validate_json(self.config_json)


class AppRecord(BaseModel):
    """Everything the orchestrator tracks for one app."""

    model_config = ConfigDict(defer_build=True)

    uuid: UUID
    name: str = ""
    config: AppInstanceConfig | None = None
    """The controller's latest config for the app."""
    deployed: AppInstanceConfig | None = None
    """The config the app runs with now (volumes attached, version reported)."""
    restored: AppInstanceConfig | None = None
    """A rollback's restored config: it has priority over the controller's."""
    rolled_back_from: str | None = None
    """The controller's config version when the last rollback was asked for; that
    version is not applied again until the controller sends another one."""
    rollback_target: str | None = None
    """A rollback asked for and not finished (survives a restart)."""
    rollback_destroy_newer: bool = False
    """That rollback may destroy snapshots newer than its target where a backend
    rolls back only to its newest (ZFS)."""
    origin: Literal["controller", "clone"] = "controller"
    """A clone is the device's own: never reported to, nor removed by, the controller."""
    cloned_from: str | None = None
    """For a clone: ``<app uuid>@<snapshot id>``."""
    last_rollback_counter: int | None = None
    evicted: list[str] = Field(default_factory=list)
    """Snapshot ids max_snapshots evicted while the controller still lists them:
    not taken again until the controller drops them from its list."""
    current_snapshot: str | None = None
    snapshots: dict[str, SnapshotRecord] = Field(default_factory=dict)
    problems: list[Problem] = Field(default_factory=list)

"""The reports the device sends back: ZInfoApp with its snapshots, ZInfoVolume,
each in a ZInfoMsg (the info message kind, the device id, a timestamp).

Field names and numbers follow lf-edge/eve-api (info/info.proto,
info/common.proto). Printed in the proto3 JSON mapping: JSON names, enums by
name, 64-bit integers as strings, timestamps in RFC 3339. Nothing evesnap adds
of its own belongs in these messages (the operator's view keeps that apart).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from evesnap_core.model.config import SnapshotType, SnapshotTypeField
from evesnap_core.model.proto import ENUM_AS_NAME, Int64, ProtoMessage, UInt32, UInt64, enum_parser, pfield


class Severity(enum.IntEnum):
    SEVERITY_UNSPECIFIED = 0
    SEVERITY_NOTICE = 1
    SEVERITY_WARNING = 2
    SEVERITY_ERROR = 3


class Entity(enum.IntEnum):
    ENTITY_UNSPECIFIED = 0
    ENTITY_BASE_OS = 1
    ENTITY_SYSTEM_ADAPTER = 2
    ENTITY_VAULT = 3
    ENTITY_ATTESTATION = 4
    ENTITY_APP_INSTANCE = 5
    ENTITY_PORT = 6
    ENTITY_NETWORK = 7
    ENTITY_NETWORK_INSTANCE = 8
    ENTITY_CONTENT_TREE = 9
    ENTITY_CONTENT_BLOB = 10
    ENTITY_VOLUME = 11


class ZSwState(enum.IntEnum):
    """The state of an app or a volume."""

    INVALID = 0
    INITIAL = 1
    DOWNLOAD_STARTED = 2
    DOWNLOADED = 3
    DELIVERED = 4
    INSTALLED = 5
    BOOTING = 6
    RUNNING = 7
    HALTING = 8
    HALTED = 9
    RESTARTING = 10
    PURGING = 11
    RESOLVING_TAG = 12
    RESOLVED_TAG = 13
    CREATING_VOLUME = 14
    CREATED_VOLUME = 15
    VERIFYING = 16
    VERIFIED = 17
    LOADING = 18
    LOADED = 19
    AWAITNETWORKINSTANCE = 20
    ERROR = 21
    START_DELAYED = 22
    PENDING = 23
    SCHEDULING = 24


SeverityField = Annotated[Severity, enum_parser(Severity), ENUM_AS_NAME]
EntityField = Annotated[Entity, enum_parser(Entity), ENUM_AS_NAME]
ZSwStateField = Annotated[ZSwState, enum_parser(ZSwState), ENUM_AS_NAME]


class DeviceEntity(ProtoMessage):
    entity: EntityField = pfield("entity", Entity.ENTITY_UNSPECIFIED)
    entity_id: str = pfield("entity_id", "")
    entity_name: str = pfield("entity_name", "")


class ErrorInfo(ProtoMessage):
    description: str = pfield("description", "")
    timestamp: datetime | None = pfield("timestamp", None)
    severity: SeverityField = pfield("severity", Severity.SEVERITY_UNSPECIFIED)
    entities: list[DeviceEntity] = pfield("entities", default_factory=list)
    retry_condition: str = pfield("retry_condition", "")


class ZInfoSnapshot(ProtoMessage):
    id: str = pfield("id")
    config_id: str = pfield("config_id", "")
    config_version: str = pfield("config_version", "")
    create_time: datetime | None = pfield("create_time", None)
    type: SnapshotTypeField = pfield("type", SnapshotType.SNAPSHOT_TYPE_UNSPECIFIED)
    snap_err: ErrorInfo | None = pfield("snap_err", None)


class ZInfoApp(ProtoMessage):
    app_id: str = pfield("AppID")
    app_version: str = pfield("appVersion", "")
    app_name: str = pfield("AppName", "")
    boot_time: datetime | None = pfield("bootTime", None)
    app_err: list[ErrorInfo] = pfield("appErr", default_factory=list)
    state: ZSwStateField = pfield("state", ZSwState.INVALID)
    volume_refs: list[str] = pfield("volumeRefs", default_factory=list)
    snapshots: list[ZInfoSnapshot] = pfield("snapshots", default_factory=list)


class UsageInfo(ProtoMessage):
    create_time: datetime | None = pfield("createTime", None)
    ref_count: UInt32 = pfield("refCount", 0)
    last_refcount_change_time: datetime | None = pfield("lastRefcountChangeTime", None)


class VolumeResources(ProtoMessage):
    max_size_bytes: UInt64 = pfield("maxSizeBytes", 0)
    cur_size_bytes: UInt64 = pfield("curSizeBytes", 0)


class ZInfoVolume(ProtoMessage):
    uuid: str = pfield("uuid")
    display_name: str = pfield("displayName", "")
    usage: UsageInfo | None = pfield("usage", None)
    resources: VolumeResources | None = pfield("resources", None)
    state: ZSwStateField = pfield("state", ZSwState.INVALID)
    progress_percentage: UInt32 = pfield("progressPercentage", 0)
    volume_err: ErrorInfo | None = pfield("volumeErr", None)
    generation_count: Int64 = pfield("generation_count", 0)


class ZInfoTypes(enum.IntEnum):
    """The kind of an info message (the ones evesnap sends, and their neighbours)."""

    ZiNop = 0
    ZiDevice = 1
    ZiApp = 3
    ZiNetworkInstance = 6
    ZiVolume = 7
    ZiContentTree = 8


ZInfoTypesField = Annotated[ZInfoTypes, enum_parser(ZInfoTypes), ENUM_AS_NAME]


class ZInfoMsg(ProtoMessage):
    """One info message: an app's or a volume's report (eve-api's InfoContent oneof)."""

    ztype: ZInfoTypesField = pfield("ztype", ZInfoTypes.ZiNop)
    dev_id: str = pfield("devId", "")
    ainfo: ZInfoApp | None = pfield("ainfo", None)
    at_time_stamp: datetime | None = pfield("atTimeStamp", None)
    vinfo: ZInfoVolume | None = pfield("vinfo", None)

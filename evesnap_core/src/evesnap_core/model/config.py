"""The controller's desired configuration: apps, volumes, content trees, snapshots.

Field names and numbers follow lf-edge/eve-api (config/appconfig.proto,
config/storage.proto, config/devcommon.proto); only what evesnap acts on is
modelled, everything else is kept as it came (see ProtoMessage).
"""

from __future__ import annotations

import enum
from typing import Annotated, Any
from uuid import UUID

from pydantic import model_validator

from evesnap_core.model.proto import (
    ENUM_AS_NAME,
    Bool,
    NonNegInt64,
    ProtoMessage,
    Str,
    UInt32,
    UInt64,
    enum_parser,
    pfield,
)
from evesnap_core.model.validation import field_error


class SnapshotType(enum.IntEnum):
    SNAPSHOT_TYPE_UNSPECIFIED = 0
    SNAPSHOT_TYPE_APP_UPDATE = 1
    SNAPSHOT_TYPE_IMMEDIATE = 2


class VolumeContentOriginType(enum.IntEnum):
    VCOT_UNKNOWN = 0
    VCOT_BLANK = 1
    VCOT_DOWNLOAD = 2


class Format(enum.IntEnum):
    """storage.proto's image format of a content tree."""

    FmtUnknown = 0
    RAW = 1
    QCOW = 2
    QCOW2 = 3
    VHD = 4
    VMDK = 5
    OVA = 6
    VHDX = 7
    CONTAINER = 8
    ISO = 9
    PVC = 10


# An enum field holds the member, or a plain int for a number this version does not name.
SnapshotTypeField = Annotated[SnapshotType | int, enum_parser(SnapshotType), ENUM_AS_NAME]
OriginTypeField = Annotated[VolumeContentOriginType | int, enum_parser(VolumeContentOriginType), ENUM_AS_NAME]
FormatField = Annotated[Format | int, enum_parser(Format), ENUM_AS_NAME]


class UUIDandVersion(ProtoMessage):
    uuid: UUID = pfield("uuid")
    version: Str = pfield("version", "")


class InstanceOpsCmd(ProtoMessage):
    """A counter the controller bumps to ask for an operation once."""

    counter: UInt32 = pfield("counter", 0)
    ops_time: Str = pfield("opsTime", "")


class SnapshotDesc(ProtoMessage):
    id: UUID = pfield("id")
    type: SnapshotTypeField = pfield("type", SnapshotType.SNAPSHOT_TYPE_UNSPECIFIED)


class SnapshotConfig(ProtoMessage):
    active_snapshot: Str = pfield("active_snapshot", "")
    rollback_cmd: InstanceOpsCmd | None = pfield("rollback_cmd", None)
    max_snapshots: UInt32 = pfield("max_snapshots", 0)
    snapshots: list[SnapshotDesc] = pfield("snapshots", default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> SnapshotConfig:
        seen: set[UUID] = set()
        for i, snap in enumerate(self.snapshots):
            if snap.id in seen:
                raise field_error(f"snapshots[{i}].id", f"duplicate snapshot id {snap.id}")
            seen.add(snap.id)
        return self


class VolumeRef(ProtoMessage):
    uuid: UUID = pfield("uuid")
    generation_count: NonNegInt64 = pfield("generationCount", 0)
    mount_dir: Str = pfield("mount_dir", "")


class AppInstanceConfig(ProtoMessage):
    uuidandversion: UUIDandVersion = pfield("uuidandversion")
    displayname: Str = pfield("displayname", "")
    activate: Bool = pfield("activate", False)
    restart: InstanceOpsCmd | None = pfield("restart", None)
    purge: InstanceOpsCmd | None = pfield("purge", None)
    volume_ref_list: list[VolumeRef] = pfield("volumeRefList", default_factory=list)
    snapshot: SnapshotConfig | None = pfield("snapshot", None)

    @property
    def uuid(self) -> UUID:
        return self.uuidandversion.uuid

    @property
    def version(self) -> str:
        return self.uuidandversion.version


class VolumeContentOrigin(ProtoMessage):
    type: OriginTypeField = pfield("type", VolumeContentOriginType.VCOT_UNKNOWN)
    download_content_tree_id: Str = pfield("downloadContentTreeID", "")


class Volume(ProtoMessage):
    uuid: UUID = pfield("uuid")
    origin: VolumeContentOrigin | None = pfield("origin", None)
    generation_count: NonNegInt64 = pfield("generationCount", 0)
    maxsizebytes: NonNegInt64 = pfield("maxsizebytes", 0)
    readonly: Bool = pfield("readonly", False)
    display_name: Str = pfield("displayName", "")
    clear_text: Bool = pfield("clear_text", False)


class ContentTree(ProtoMessage):
    uuid: UUID = pfield("uuid")
    ds_id: Str = pfield("dsId", "")
    url: Str = pfield("URL", "")
    iformat: FormatField = pfield("iformat", Format.FmtUnknown)
    sha256: Str = pfield("sha256", "")
    max_size_bytes: UInt64 = pfield("maxSizeBytes", 0)
    display_name: Str = pfield("displayName", "")
    generation_count: NonNegInt64 = pfield("generation_count", 0)


class DeviceConfig(ProtoMessage):
    """The part of EdgeDevConfig evesnap reconciles to."""

    apps: list[AppInstanceConfig] = pfield("apps", default_factory=list)
    volumes: list[Volume] = pfield("volumes", default_factory=list)
    content_info: list[ContentTree] = pfield("contentInfo", default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> DeviceConfig:
        _unique("apps", [(a.uuid, "uuidandversion.uuid") for a in self.apps])
        _unique("volumes", [(v.uuid, "uuid") for v in self.volumes])
        _unique("contentInfo", [(c.uuid, "uuid") for c in self.content_info])
        volumes = {v.uuid for v in self.volumes}
        trees = {str(c.uuid) for c in self.content_info}
        for i, app in enumerate(self.apps):
            for j, ref in enumerate(app.volume_ref_list):
                if ref.uuid not in volumes:
                    raise field_error(f"apps[{i}].volumeRefList[{j}].uuid", f"unknown volume {ref.uuid}")
        for i, vol in enumerate(self.volumes):
            origin = vol.origin
            if origin and origin.type == VolumeContentOriginType.VCOT_DOWNLOAD:
                tree = origin.download_content_tree_id
                if tree.lower() not in trees:
                    raise field_error(
                        f"volumes[{i}].origin.downloadContentTreeID", f"unknown content tree {tree!r}"
                    )
        return self

    def volume(self, uuid: UUID) -> Volume:
        for vol in self.volumes:
            if vol.uuid == uuid:
                return vol
        raise KeyError(str(uuid))

    def content_tree(self, uuid: str) -> ContentTree:
        for tree in self.content_info:
            if str(tree.uuid) == uuid.lower():
                return tree
        raise KeyError(uuid)


def _unique(list_name: str, items: list[tuple[Any, str]]) -> None:
    seen: dict[Any, int] = {}
    for i, (key, field_name) in enumerate(items):
        if key in seen:
            raise field_error(
                f"{list_name}[{i}].{field_name}", f"duplicate {key} (also {list_name}[{seen[key]}])"
            )
        seen[key] = i

"""eve-api's messages as Google protobuf classes, for the wire formats evesnap shares with EVE.

The pydantic models (config.py, info.py) are what evesnap works with; these
are the same messages as the protobuf runtime sees them, so that a config can
come in as binary ``EdgeDevConfig``, a report can go out as a binary
``ZInfoMsg``, and tests can check evesnap's JSON against Google's own proto3
JSON parser (``json_format``). Only the messages and fields evesnap speaks are
defined; a field they leave out is an unknown field to them (kept by binary
parsing, refused by ``json_format.Parse`` unless told to ignore it).

The definitions are written here from lf-edge/eve-api's published field
names, numbers and types (config/devconfig.proto, appconfig.proto,
storage.proto, devcommon.proto; info/info.proto, common.proto), built with
``descriptor_pb2`` in a private descriptor pool: no protoc, no generated code,
no clash with an installed eve-api package. Needs the ``protobuf``
distribution (``pip install 'evesnap-core[protobuf]'``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

CONFIG_PACKAGE = "org.lfedge.eve.config"
INFO_PACKAGE = "org.lfedge.eve.info"

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING,
    "bool": _F.TYPE_BOOL,
    "uint32": _F.TYPE_UINT32,
    "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64,
}

# enum name -> ((value name, number), ...)
_CONFIG_ENUMS: dict[str, tuple[tuple[str, int], ...]] = {
    "SnapshotType": (
        ("SNAPSHOT_TYPE_UNSPECIFIED", 0),
        ("SNAPSHOT_TYPE_APP_UPDATE", 1),
        ("SNAPSHOT_TYPE_IMMEDIATE", 2),
    ),
    "VolumeContentOriginType": (("VCOT_UNKNOWN", 0), ("VCOT_BLANK", 1), ("VCOT_DOWNLOAD", 2)),
    "Format": (
        ("FmtUnknown", 0), ("RAW", 1), ("QCOW", 2), ("QCOW2", 3), ("VHD", 4), ("VMDK", 5),
        ("OVA", 6), ("VHDX", 7), ("CONTAINER", 8), ("ISO", 9), ("PVC", 10),
    ),
}  # fmt: skip

# message name -> ((field name, number, type, repeated), ...); a type is a scalar
# name above, an enum or message of the same file, or ".google.protobuf.Timestamp"
_CONFIG_MESSAGES: dict[str, tuple[tuple[str, int, str, bool], ...]] = {
    "UUIDandVersion": (("uuid", 1, "string", False), ("version", 2, "string", False)),
    "InstanceOpsCmd": (("counter", 2, "uint32", False), ("opsTime", 4, "string", False)),
    "SnapshotDesc": (("id", 1, "string", False), ("type", 2, "SnapshotType", False)),
    "SnapshotConfig": (
        ("active_snapshot", 1, "string", False),
        ("rollback_cmd", 2, "InstanceOpsCmd", False),
        ("max_snapshots", 3, "uint32", False),
        ("snapshots", 4, "SnapshotDesc", True),
    ),
    "VolumeRef": (
        ("uuid", 1, "string", False),
        ("generationCount", 2, "int64", False),
        ("mount_dir", 3, "string", False),
    ),
    "AppInstanceConfig": (
        ("uuidandversion", 1, "UUIDandVersion", False),
        ("displayname", 2, "string", False),
        ("activate", 5, "bool", False),
        ("restart", 9, "InstanceOpsCmd", False),
        ("purge", 10, "InstanceOpsCmd", False),
        ("volumeRefList", 16, "VolumeRef", True),
        ("snapshot", 22, "SnapshotConfig", False),
    ),
    "VolumeContentOrigin": (
        ("type", 1, "VolumeContentOriginType", False),
        ("downloadContentTreeID", 2, "string", False),
    ),
    "Volume": (
        ("uuid", 1, "string", False),
        ("origin", 2, "VolumeContentOrigin", False),
        ("generationCount", 4, "int64", False),
        ("maxsizebytes", 5, "int64", False),
        ("readonly", 6, "bool", False),
        ("displayName", 7, "string", False),
        ("clear_text", 8, "bool", False),
    ),
    "ContentTree": (
        ("uuid", 1, "string", False),
        ("dsId", 2, "string", False),
        ("URL", 3, "string", False),
        ("iformat", 4, "Format", False),
        ("sha256", 5, "string", False),
        ("maxSizeBytes", 6, "uint64", False),
        ("displayName", 8, "string", False),
        ("generation_count", 9, "int64", False),
    ),
    "EdgeDevConfig": (
        ("apps", 4, "AppInstanceConfig", True),
        ("contentInfo", 20, "ContentTree", True),
        ("volumes", 21, "Volume", True),
    ),
}


def _numbered(names: str, prefix: str = "") -> tuple[tuple[str, int], ...]:
    """Values numbered 0, 1, 2, ... in the order given (as these enums are in eve-api)."""
    return tuple((prefix + name, i) for i, name in enumerate(names.split()))


_INFO_ENUMS: dict[str, tuple[tuple[str, int], ...]] = {
    "ZInfoTypes": (
        ("ZiNop", 0), ("ZiDevice", 1), ("ZiApp", 3), ("ZiNetworkInstance", 6), ("ZiVolume", 7),
        ("ZiContentTree", 8), ("ZiBlobList", 9), ("ZiAppInstMetaData", 10), ("ZiHardware", 11),
        ("ZiEdgeview", 12), ("ZiLocation", 13), ("ZiPatchEnvelope", 14), ("ZiNTPSources", 16),
        ("ZiKubeCluster", 17), ("ZiKubeClusterUpdateStatus", 18),
    ),
    "ZSwState": _numbered(
        "INVALID INITIAL DOWNLOAD_STARTED DOWNLOADED DELIVERED INSTALLED BOOTING RUNNING "
        "HALTING HALTED RESTARTING PURGING RESOLVING_TAG RESOLVED_TAG CREATING_VOLUME "
        "CREATED_VOLUME VERIFYING VERIFIED LOADING LOADED AWAITNETWORKINSTANCE ERROR "
        "START_DELAYED PENDING SCHEDULING"
    ),
    "SnapshotType": _CONFIG_ENUMS["SnapshotType"],
    "Severity": (
        ("SEVERITY_UNSPECIFIED", 0), ("SEVERITY_NOTICE", 1), ("SEVERITY_WARNING", 2), ("SEVERITY_ERROR", 3),
    ),
    "Entity": _numbered(
        "UNSPECIFIED BASE_OS SYSTEM_ADAPTER VAULT ATTESTATION APP_INSTANCE PORT NETWORK "
        "NETWORK_INSTANCE CONTENT_TREE CONTENT_BLOB VOLUME",
        prefix="ENTITY_",
    ),
}  # fmt: skip

_TS = ".google.protobuf.Timestamp"
_INFO_MESSAGES: dict[str, tuple[tuple[str, int, str, bool], ...]] = {
    "DeviceEntity": (
        ("entity", 1, "Entity", False),
        ("entity_id", 2, "string", False),
        ("entity_name", 3, "string", False),
    ),
    "ErrorInfo": (
        ("description", 1, "string", False),
        ("timestamp", 2, _TS, False),
        ("severity", 3, "Severity", False),
        ("entities", 4, "DeviceEntity", True),
        ("retry_condition", 5, "string", False),
    ),
    "ZInfoSnapshot": (
        ("id", 1, "string", False),
        ("config_id", 2, "string", False),
        ("config_version", 3, "string", False),
        ("create_time", 4, _TS, False),
        ("type", 5, "SnapshotType", False),
        ("snap_err", 6, "ErrorInfo", False),
    ),
    "ZInfoApp": (
        ("AppID", 1, "string", False),
        ("appVersion", 2, "string", False),
        ("systemApp", 6, "bool", False),
        ("AppName", 7, "string", False),
        ("bootTime", 12, _TS, False),
        ("appErr", 14, "ErrorInfo", True),
        ("state", 15, "ZSwState", False),
        ("volumeRefs", 17, "string", True),
        ("snapshots", 18, "ZInfoSnapshot", True),
    ),
    "UsageInfo": (
        ("createTime", 1, _TS, False),
        ("refCount", 2, "uint32", False),
        ("lastRefcountChangeTime", 3, _TS, False),
    ),
    "VolumeResources": (("maxSizeBytes", 1, "uint64", False), ("curSizeBytes", 2, "uint64", False)),
    "ZInfoVolume": (
        ("uuid", 1, "string", False),
        ("displayName", 2, "string", False),
        ("usage", 3, "UsageInfo", False),
        ("resources", 4, "VolumeResources", False),
        ("state", 5, "ZSwState", False),
        ("progressPercentage", 6, "uint32", False),
        ("volumeErr", 7, "ErrorInfo", False),
        ("generation_count", 8, "int64", False),
    ),
    "ZInfoMsg": (
        ("ztype", 1, "ZInfoTypes", False),
        ("devId", 2, "string", False),
        ("ainfo", 5, "ZInfoApp", False),
        ("atTimeStamp", 6, _TS, False),
        ("vinfo", 13, "ZInfoVolume", False),
    ),
}
_ONEOFS = {"ZInfoMsg": ("InfoContent", ("ainfo", "vinfo"))}
"""ZInfoMsg's body is a oneof (InfoContent) in eve-api."""


def _file(
    name: str,
    package: str,
    enums: dict[str, tuple[tuple[str, int], ...]],
    messages: dict[str, tuple[tuple[str, int, str, bool], ...]],
) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")
    proto.dependency.append(timestamp_pb2.DESCRIPTOR.name)
    for enum_name, values in enums.items():
        enum = proto.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        oneof = _ONEOFS.get(message_name)
        if oneof is not None:
            message.oneof_decl.add(name=oneof[0])
        for field_name, number, type_name, repeated in fields:
            field = message.field.add(name=field_name, number=number)
            field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
            elif type_name in enums:
                field.type = _F.TYPE_ENUM
                field.type_name = f".{package}.{type_name}"
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = type_name if type_name.startswith(".") else f".{package}.{type_name}"
            if oneof is not None and field_name in oneof[1]:
                field.oneof_index = 0
    return proto


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(_file("evesnap/eve_config.proto", CONFIG_PACKAGE, _CONFIG_ENUMS, _CONFIG_MESSAGES))
    pool.Add(_file("evesnap/eve_info.proto", INFO_PACKAGE, _INFO_ENUMS, _INFO_MESSAGES))
    return pool


@cache
def message_class(full_name: str) -> Any:
    """The protobuf class of an eve-api message, e.g. ``org.lfedge.eve.config.EdgeDevConfig``."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(full_name))


def config_message(name: str) -> Any:
    """A new, empty config message (``EdgeDevConfig``, ``AppInstanceConfig``, ...)."""
    return message_class(f"{CONFIG_PACKAGE}.{name}")()


def info_message(name: str) -> Any:
    """A new, empty info message (``ZInfoMsg``, ``ZInfoApp``, ``ZInfoVolume``, ...)."""
    return message_class(f"{INFO_PACKAGE}.{name}")()

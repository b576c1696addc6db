"""The typo guard: every unknown field and unknown enum number of a parsed config, named.

proto3 keeps what it does not know, and so does evesnap (a newer controller's
fields must survive a rollback), but a typo is kept the same way: ``activte``
leaves an app halted, ``maxsizebyte`` makes a 0-byte volume, ``volumeRefLst``
runs an app with no disks, all without a word. This module walks a parsed
`DeviceConfig` and says, per field, what was not understood, with the nearest
known name ("apps[0].activte: unknown field; did you mean activate?"). eve-api
fields that evesnap does not act on (``fixedresources``, ``networks``, ...) are
known, not unknown: they pass silently, under ``--strict`` too.

Field names below are lf-edge/eve-api's (config/devconfig.proto,
config/appconfig.proto, config/storage.proto).
"""

from __future__ import annotations

import difflib
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from evesnap_core.model.binary import UNKNOWN_FIELDS
from evesnap_core.model.config import (
    AppInstanceConfig,
    ContentTree,
    DeviceConfig,
    Volume,
)
from evesnap_core.model.proto import ProtoMessage, json_name, wire_names

NOT_MODELLED: dict[type[ProtoMessage], tuple[str, ...]] = {
    DeviceConfig: (
        "id", "networks", "datastores", "base", "reboot", "backup", "configItems",
        "systemAdapterList", "deviceIoList", "manufacturer", "productName", "networkInstances",
        "cipherContexts", "controllercert_confighash", "maintenance_mode", "controller_epoch",
        "baseos", "global_profile", "local_profile_server", "profile_server_token", "vlans",
        "bonds", "edgeview", "disks", "shutdown", "device_name", "project_name", "project_id",
        "enterprise_name", "enterprise_id", "config_timestamp", "loc_config", "patchEnvelopes",
        "cluster", "pnacs", "scep_profiles",
    ),
    AppInstanceConfig: (
        "fixedresources", "drives", "interfaces", "adapters", "userData", "remoteConsole",
        "cipherData", "collectStatsIPAddr", "metaDataType", "profile_list",
        "start_delay_in_seconds", "service", "cloud_init_version", "patchRef",
        "designated_node_id", "vm_resolution", "runtime_type", "affinity",
    ),
    Volume: ("protocols", "target", "designated_node_id"),
    ContentTree: ("siginfo", "custom_meta_data", "ds_ids_list", "designated_node_id"),
}  # fmt: skip
"""eve-api fields of each message that evesnap keeps and passes on but does not act on."""


def _known_names(cls: type[ProtoMessage]) -> set[str]:
    names = set(wire_names(cls).wire) | {UNKNOWN_FIELDS}  # a binary config's unknown fields, kept
    for original in NOT_MODELLED.get(cls, ()):
        names.update((original, json_name(original)))
    return names


@dataclass(frozen=True)
class ConfigWarning:
    """One thing of a config that evesnap kept without understanding it."""

    path: str
    message: str
    apps: tuple[UUID, ...] = ()
    """The apps it concerns (an app's field, or a volume or content tree they use)."""
    unknown_field: bool = False
    """An unknown field (refused by --strict); else an unknown enum number."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class _Walk:
    found: list[tuple[str, str, bool]] = field(default_factory=list)

    def message(self, model: ProtoMessage, path: str) -> None:
        cls = type(model)
        known = _known_names(cls)
        for key in model.model_extra or {}:
            if key in known:
                continue
            where = f"{path}.{key}" if path else key
            self.found.append((where, _unknown(key, known), True))
        for attr, info in cls.model_fields.items():
            value = getattr(model, attr)
            where = f"{path}.{info.serialization_alias or attr}" if path else str(info.serialization_alias)
            if isinstance(value, ProtoMessage):
                self.message(value, where)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ProtoMessage):
                        self.message(item, f"{where}[{i}]")
            elif isinstance(value, int) and not isinstance(value, (bool, enum.IntEnum)):
                named = _enum_of(info.annotation)
                if named is not None:
                    self.found.append(
                        (where, f"{named.__name__} number {value} is unknown to this version; kept", False)
                    )


def _enum_of(annotation: Any) -> type[enum.IntEnum] | None:
    """The IntEnum of an enum field (annotated ``SomeEnum | int``), else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, enum.IntEnum):
                return arg
    return None


def _unknown(key: str, known: set[str]) -> str:
    # suggest the JSON spelling of the closest name, compared without case
    by_lower: dict[str, str] = {}
    for name in sorted(known):
        by_lower.setdefault(name.lower(), json_name(name))
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {by_lower[close[0]]}?"
    return "unknown field"


def config_warnings(device: DeviceConfig) -> list[ConfigWarning]:
    """Every unknown field and unknown enum number of `device`, in document order."""
    walk = _Walk()
    walk.message(device, "")
    by_volume: dict[int, tuple[UUID, ...]] = {}
    for i, vol in enumerate(device.volumes):
        by_volume[i] = tuple(
            a.uuid for a in device.apps if any(r.uuid == vol.uuid for r in a.volume_ref_list)
        )
    by_tree: dict[int, tuple[UUID, ...]] = {}
    for i, tree in enumerate(device.content_info):
        tree_users: list[UUID] = []
        for j, vol in enumerate(device.volumes):
            if vol.origin and vol.origin.download_content_tree_id.lower() == str(tree.uuid):
                tree_users.extend(u for u in by_volume[j] if u not in tree_users)
        by_tree[i] = tuple(tree_users)
    out = []
    for path, message, is_field in walk.found:
        out.append(ConfigWarning(path, message, _concerns(device, path, by_volume, by_tree), is_field))
    return out


def _concerns(
    device: DeviceConfig,
    path: str,
    by_volume: dict[int, tuple[UUID, ...]],
    by_tree: dict[int, tuple[UUID, ...]],
) -> tuple[UUID, ...]:
    head, _, rest = path.partition("[")
    if not rest:
        return ()
    index = int(rest.split("]", 1)[0])
    if head == "apps":
        return (device.apps[index].uuid,)
    if head == "volumes":
        return by_volume.get(index, ())
    if head == "contentInfo":
        return by_tree.get(index, ())
    return ()


def app_warnings(warnings: list[ConfigWarning]) -> dict[UUID, list[str]]:
    """The warning lines per app they concern."""
    out: dict[UUID, list[str]] = {}
    for w in warnings:
        for app in w.apps:
            out.setdefault(app, []).append(str(w))
    return out

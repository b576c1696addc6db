"""The tolerant reader, case by case as the reference's deserializer tests: simple,
missing file, missing mandatory, extra field, missing optional, nested, list of
structs; plus schema versions (older migrated, newer tolerated)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from evesnap_core.errors import StateError
from evesnap_core.state.files import SnapshotInstanceStatus, VolumesSnapshotStatus
from evesnap_core.state.stored import Migration, StoredFile, StoredModel, parse_stored, read_stored

APP = "6a0b3b4e-6a7e-4c3f-9d5a-1f2e3d4c5b6a"
VOLUME = "0f0e0d0c-0b0a-4908-8706-050403020100"


def status_doc() -> dict[str, Any]:
    return {
        "SchemaVersion": 1,
        "Snapshot": {"SnapshotID": "snap-1", "SnapshotType": 1, "DisplayName": "before upgrade"},
        "AppInstanceID": APP,
        "ConfigVersion": "7",
        "State": "available",
        "Origin": "controller",
        "TimeTriggered": "2026-11-30T10:00:00Z",
        "TimeCreated": "2026-11-30T10:00:01Z",
        "Parent": None,
        "Error": None,
        "Exports": {},
    }


def volumes_doc() -> dict[str, Any]:
    handle = {
        "uuid": VOLUME,
        "generation": 1,
        "backend": "qcow2",
        "format": "qcow2",
        "location": "/persist/vault/volumes/x.qcow2",
    }
    info = {
        "snapshot_id": "snap-1",
        "name": "tag",
        "volume": VOLUME,
        "generation": 1,
        "created": "2026-11-30T10:00:01Z",
    }
    return {
        "SchemaVersion": 1,
        "SnapshotID": "snap-1",
        "VolumeSnapshotMeta": {f"{VOLUME}#1": {"Volume": {"handle": handle, "info": info}}},
        "AppUUID": APP,
        "VolumeKeys": [f"{VOLUME}#1"],
    }


def without(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


class Item(StoredModel):
    name: str = Field(alias="Name")
    size: int = Field(0, alias="Size")


class Listing(StoredFile):
    items: list[Item] = Field(alias="Items")


CASES: list[tuple[str, type[StoredFile], dict[str, Any], str | None, list[str]]] = [
    # name, model, document, error expected (None: loads), warnings expected (substrings)
    ("simple", SnapshotInstanceStatus, status_doc(), None, []),
    ("simple volumes", VolumesSnapshotStatus, volumes_doc(), None, []),
    (
        "missing mandatory",
        SnapshotInstanceStatus,
        without(status_doc(), "AppInstanceID"),
        "Critical field AppInstanceID missing in stored data in {file}",
        [],
    ),
    (
        "missing mandatory (reference's VolumesSnapshotStatus)",
        VolumesSnapshotStatus,
        without(volumes_doc(), "VolumeSnapshotMeta"),
        "Critical field VolumeSnapshotMeta missing in stored data in {file}",
        [],
    ),
    (
        "missing schema version",
        SnapshotInstanceStatus,
        without(status_doc(), "SchemaVersion"),
        "Critical field SchemaVersion missing in stored data in {file}",
        [],
    ),
    (
        "extra field",
        SnapshotInstanceStatus,
        {**status_doc(), "Future": {"x": 1}},
        None,
        ["unknown field Future in {file}: kept as it is"],
    ),
    (
        "missing optional",
        SnapshotInstanceStatus,
        without(status_doc(), "Parent"),
        None,
        ["optional field Parent missing in {file}: using its default"],
    ),
    (
        "nested: missing mandatory",
        SnapshotInstanceStatus,
        without(status_doc(), "Snapshot", "SnapshotID"),
        "Critical field Snapshot.SnapshotID missing in stored data in {file}",
        [],
    ),
    (
        "nested: missing optional and extra",
        SnapshotInstanceStatus,
        without(
            {**status_doc(), "Snapshot": {**status_doc()["Snapshot"], "Color": "red"}},
            "Snapshot",
            "DisplayName",
        ),
        None,
        ["optional field Snapshot.DisplayName missing", "unknown field Snapshot.Color"],
    ),
    (
        "dict of structs: missing mandatory",
        VolumesSnapshotStatus,
        without(volumes_doc(), "VolumeSnapshotMeta", f"{VOLUME}#1", "Volume"),
        f"Critical field EvesnapVolumes[{VOLUME}#1].Volume missing in stored data in {{file}}",
        [],
    ),
    (
        "list of structs",
        Listing,
        {"SchemaVersion": 1, "Items": [{"Name": "a", "Size": 1}, {"Name": "b", "Size": 2}]},
        None,
        [],
    ),
    (
        "list of structs: missing mandatory in one",
        Listing,
        {"SchemaVersion": 1, "Items": [{"Name": "a"}, {"Size": 2}]},
        "Critical field Items[1].Name missing in stored data in {file}",
        [],
    ),
    (
        "list of structs: missing optional",
        Listing,
        {"SchemaVersion": 1, "Items": [{"Name": "a"}]},
        None,
        ["optional field Items[0].Size missing"],
    ),
    (
        "wrong type names the field",
        SnapshotInstanceStatus,
        {**status_doc(), "ConfigVersion": {"UUID": APP, "Version": 7}},
        "field ConfigVersion.Version: Input should be a valid string in stored data in {file}",
        [],
    ),
    (
        "not an object",
        SnapshotInstanceStatus,
        [1, 2],  # type: ignore[dict-item]
        "stored data is a JSON list, not an object in {file}",
        [],
    ),
]


@pytest.mark.parametrize(
    ("model", "doc", "error", "warnings"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reading_a_stored_file(
    tmp_path: Path, model: type[StoredFile], doc: Any, error: str | None, warnings: list[str]
) -> None:
    path = tmp_path / "snapshotInstanceStatus.json"
    path.write_text(json.dumps(doc))
    if error is not None:
        with pytest.raises(StateError) as info:
            read_stored(model, path)
        assert str(info.value) == error.format(file=path)
        return
    loaded = read_stored(model, path)
    for expected in warnings:
        assert any(expected.format(file=path) in w for w in loaded.warnings), (expected, loaded.warnings)
    if not warnings:
        assert loaded.warnings == []


def test_missing_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "snapshots" / "snap-1" / "volumesSnapshotStatus.json"
    with pytest.raises(StateError, match=f"stored data missing in {path}$"):
        read_stored(VolumesSnapshotStatus, path)


def test_truncated_file_is_an_error_naming_the_file() -> None:
    raw = json.dumps(status_doc())[:-7]
    with pytest.raises(StateError, match=r"stored data is not JSON .* in f\.json$"):
        parse_stored(SnapshotInstanceStatus, raw, "f.json")


def test_unknown_fields_survive_a_rewrite() -> None:
    """An older evesnap reading a newer file must not strip what it does not know."""
    doc = {**status_doc(), "Future": {"x": [1, 2]}, "Snapshot": {**status_doc()["Snapshot"], "Color": "red"}}
    value = parse_stored(SnapshotInstanceStatus, json.dumps(doc), "f").value
    again = json.loads(value.dump())
    assert again["Future"] == {"x": [1, 2]} and again["Snapshot"]["Color"] == "red"


def _rename_size(doc: dict[str, Any]) -> dict[str, Any]:
    for item in doc.get("Entries", []):
        item["Size"] = item.pop("Bytes", 0)
    doc["Items"] = doc.pop("Entries", [])
    return doc


class ListingV2(StoredFile):
    """Schema 2 renamed Entries to Items and Bytes to Size."""

    SCHEMA: ClassVar[int] = 2
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {1: _rename_size}
    items: list[Item] = Field(alias="Items")


def test_an_older_schema_is_migrated_on_read() -> None:
    old = {"SchemaVersion": 1, "Entries": [{"Name": "a", "Bytes": 5}]}
    value = parse_stored(ListingV2, json.dumps(old), "f").value
    assert value.schema_version == 2 and value.items == [Item(Name="a", Size=5)]
    assert json.loads(value.dump())["SchemaVersion"] == 2


def test_a_newer_schema_loads_what_is_known_with_a_warning() -> None:
    doc = {
        **status_doc(),
        "SchemaVersion": 9,
        "Hologram": True,
        "ConfigVersion": {"UUID": APP, "Version": "7"},
    }
    loaded = parse_stored(SnapshotInstanceStatus, json.dumps(doc), "f")
    assert loaded.value.config_version.version == "7"
    assert any("schema 9 by a newer evesnap" in w for w in loaded.warnings)


@pytest.mark.parametrize("version", [0, -1, "1", 1.5, True])
def test_a_nonsense_schema_version_is_refused(version: object) -> None:
    with pytest.raises(StateError, match="field SchemaVersion"):
        parse_stored(SnapshotInstanceStatus, json.dumps({**status_doc(), "SchemaVersion": version}), "f")


def test_schema_1_files_are_migrated_to_eve_s_shapes() -> None:
    """Schema 2 writes EVE's shapes: ConfigVersion {UUID, Version}; VolumeSnapshotMeta
    {volume UUID: the backend's own name}, evesnap's records under EvesnapVolumes."""
    status = parse_stored(SnapshotInstanceStatus, json.dumps(status_doc()), "f")
    assert status.warnings == []
    assert str(status.value.config_version.uuid) == APP and status.value.config_version.version == "7"
    assert json.loads(status.value.dump())["ConfigVersion"] == {"UUID": APP, "Version": "7"}
    volumes = parse_stored(VolumesSnapshotStatus, json.dumps(volumes_doc()), "f")
    assert volumes.warnings == []
    assert volumes.value.volume_snapshot_meta == {VOLUME: "tag"}
    assert list(volumes.value.evesnap_volumes) == [f"{VOLUME}#1"]


def test_a_schema_2_snapshot_reads_as_crash_consistent_without_a_warning() -> None:
    """Snapshots evesnap took before it recorded consistency levels were never quiesced."""
    doc = {**status_doc(), "SchemaVersion": 2, "ConfigVersion": {"UUID": APP, "Version": "7"}}
    loaded = parse_stored(SnapshotInstanceStatus, json.dumps(doc).encode(), "f.json")
    assert loaded.value.consistency == "crash-consistent"
    assert "before evesnap recorded" in loaded.value.consistency_detail
    assert loaded.warnings == []
    assert json.loads(loaded.value.dump())["SchemaVersion"] == SnapshotInstanceStatus.SCHEMA == 3

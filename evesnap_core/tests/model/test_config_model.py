"""The controller's config in the proto3 JSON mapping: round trips and refusals."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evesnap_core.errors import ConfigError
from evesnap_core.model.config import (
    AppInstanceConfig,
    DeviceConfig,
    SnapshotConfig,
    SnapshotType,
    VolumeContentOriginType,
)
from evesnap_core.model.validation import parse_model

APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOL = "6ba7b811-9dad-41d1-80b4-00c04fd430c8"
VOL2 = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
TREE = "6ba7b815-9dad-41d1-80b4-00c04fd430c8"
SNAP = "6ba7b812-9dad-41d1-80b4-00c04fd430c8"
SNAP2 = "6ba7b813-9dad-41d1-80b4-00c04fd430c8"


def device(**app_changes: Any) -> dict[str, Any]:
    app: dict[str, Any] = {
        "uuidandversion": {"uuid": APP, "version": "1"},
        "displayname": "app",
        "activate": True,
        "volumeRefList": [{"uuid": VOL, "generationCount": "2"}, {"uuid": VOL2}],
        "snapshot": {
            "activeSnapshot": "",
            "rollbackCmd": {"counter": 3},
            "maxSnapshots": 2,
            "snapshots": [{"id": SNAP, "type": "SNAPSHOT_TYPE_APP_UPDATE"}],
        },
        "fixedresources": {"memory": 1024, "vcpus": 1},
    }
    app.update(app_changes)
    return {
        "apps": [app],
        "volumes": [
            {
                "uuid": VOL,
                "generationCount": 2,
                "maxsizebytes": "1048576",
                "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREE},
            },
            {"uuid": VOL2, "origin": {"type": 1}, "maxsizebytes": 4096},
        ],
        "contentInfo": [{"uuid": TREE, "URL": "file:///images/os.qcow2", "iformat": "QCOW2"}],
    }


def test_parses_json_names_and_keeps_unknown_fields() -> None:
    config = parse_model(DeviceConfig, device())
    app = config.apps[0]
    assert str(app.uuid) == APP and app.version == "1"
    assert app.volume_ref_list[0].generation_count == 2
    assert app.snapshot is not None and app.snapshot.rollback_cmd is not None
    assert app.snapshot.rollback_cmd.counter == 3
    assert app.snapshot.snapshots[0].type is SnapshotType.SNAPSHOT_TYPE_APP_UPDATE
    assert config.volumes[0].maxsizebytes == 1048576
    assert config.volumes[1].origin is not None
    assert config.volumes[1].origin.type is VolumeContentOriginType.VCOT_BLANK
    assert config.content_info[0].url == "file:///images/os.qcow2"
    # fields evesnap does not model come back out unchanged
    assert app.to_json_dict()["fixedresources"] == {"memory": 1024, "vcpus": 1}


def test_accepts_original_field_names_too() -> None:
    snap = parse_model(
        SnapshotConfig,
        {
            "active_snapshot": SNAP,
            "rollback_cmd": {"counter": "7"},
            "max_snapshots": 1,
            "snapshots": [{"id": SNAP, "type": 2}],
        },
    )
    assert snap.active_snapshot == SNAP
    assert snap.rollback_cmd is not None and snap.rollback_cmd.counter == 7
    assert snap.snapshots[0].type is SnapshotType.SNAPSHOT_TYPE_IMMEDIATE


def test_prints_proto3_json() -> None:
    out = parse_model(DeviceConfig, device()).to_json_dict()
    app = out["apps"][0]
    assert app["snapshot"]["rollbackCmd"] == {"counter": 3, "opsTime": ""}
    assert app["snapshot"]["snapshots"][0]["type"] == "SNAPSHOT_TYPE_APP_UPDATE"
    assert app["volumeRefList"][0]["generationCount"] == "2"  # int64 as a string
    assert out["volumes"][0]["origin"]["type"] == "VCOT_DOWNLOAD"
    assert out["contentInfo"][0]["iformat"] == "QCOW2"
    assert "rollback_cmd" not in json.dumps(out)


def test_round_trip_is_stable() -> None:
    first = parse_model(DeviceConfig, device())
    second = parse_model(DeviceConfig, first.to_json_dict())
    assert first == second
    assert first.to_json_dict() == second.to_json_dict()


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    data = device()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


REFUSALS = [
    (["apps", 0, "uuidandversion", "uuid"], "not-a-uuid", "apps[0].uuidandversion.uuid"),
    (["volumes", 0, "generationCount"], -1, "volumes[0].generationCount"),
    (["volumes", 0, "maxsizebytes"], "12x", "volumes[0].maxsizebytes"),
    (["apps", 0, "snapshot", "maxSnapshots"], -2, "apps[0].snapshot.maxSnapshots"),
    (["apps", 0, "snapshot", "rollbackCmd", "counter"], 2**32, "apps[0].snapshot.rollbackCmd.counter"),
    (
        ["apps", 0, "snapshot", "snapshots", 0, "type"],
        "SNAPSHOT_TYPE_WEEKLY",
        "apps[0].snapshot.snapshots[0].type",
    ),
    (["apps", 0, "snapshot", "snapshots", 0, "type"], 2**31, "apps[0].snapshot.snapshots[0].type"),
    (["apps", 0, "snapshot", "snapshots", 0, "type"], True, "apps[0].snapshot.snapshots[0].type"),
    (
        ["apps", 0, "snapshot", "snapshots"],
        [{"id": SNAP, "type": 1}, {"id": SNAP2, "type": 1}, {"id": SNAP, "type": 2}],
        "apps[0].snapshot.snapshots[2].id",
    ),
    (["apps", 0, "volumeRefList", 1, "uuid"], SNAP2, "apps[0].volumeRefList[1].uuid"),
    (["volumes", 0, "origin", "downloadContentTreeID"], SNAP2, "volumes[0].origin.downloadContentTreeID"),
    (["contentInfo", 0, "iformat"], "QCOW3", "contentInfo[0].iformat"),
    (["apps", 0, "activate"], "yes please", "apps[0].activate"),
    (["apps", 0, "activate"], "true", "apps[0].activate"),
    (["apps", 0, "activate"], 1, "apps[0].activate"),
    (["apps", 0, "displayname"], 5, "apps[0].displayname"),
    (["contentInfo", 0, "maxSizeBytes"], 2**64, "contentInfo[0].maxSizeBytes"),
    (["contentInfo", 0, "maxSizeBytes"], "1.5", "contentInfo[0].maxSizeBytes"),
    (["apps", 0, "snapshot", "snapshots"], [None], "apps[0].snapshot.snapshots[0]"),
    (["apps", 0, "fixedresources"], {"memory": float("inf")}, "apps[0].fixedresources.memory"),
    (["apps", 0, "fixedresources"], [float("nan")], "apps[0].fixedresources[0]"),
]


@pytest.mark.parametrize(("path", "value", "field"), REFUSALS, ids=[r[2] for r in REFUSALS])
def test_invalid_input_is_refused_naming_the_field(path: list[Any], value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model(DeviceConfig, _mutate(path, value))
    assert info.value.path == field, str(info.value)
    assert str(info.value).startswith(field + ": ")


def test_duplicate_app_is_refused() -> None:
    data = device()
    data["apps"].append(copy.deepcopy(data["apps"][0]))
    with pytest.raises(ConfigError, match=r"^apps\[1\]\.uuidandversion\.uuid: duplicate"):
        parse_model(DeviceConfig, data)


def test_not_json_is_refused() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_model(DeviceConfig, "{apps: [")


# ------------------------------------------------------------ fuzzing

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = [
    "uuidandversion",
    "uuid",
    "version",
    "snapshot",
    "snapshots",
    "rollbackCmd",
    "rollback_cmd",
    "counter",
    "maxSnapshots",
    "id",
    "type",
    "volumeRefList",
    "generationCount",
    "activate",
    "apps",
    "volumes",
    "contentInfo",
    "origin",
    "maxsizebytes",
    "iformat",
    "URL",
]


def mutations() -> st.SearchStrategy[dict[str, Any]]:
    """Valid configs with one field somewhere replaced by an arbitrary JSON value."""

    def apply(args: tuple[int, str, Any]) -> dict[str, Any]:
        seed, name, value = args
        data = device()
        nodes: list[Any] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                nodes.append(node)
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(data)
        nodes[seed % len(nodes)][name] = value
        return data

    return st.tuples(st.integers(0, 1000), st.sampled_from(FIELD_NAMES), json_values).map(apply)


@settings(max_examples=1500, deadline=None)
@given(mutations())
def test_fuzzed_configs_parse_or_are_refused_naming_a_field(data: dict[str, Any]) -> None:
    try:
        config = parse_model(DeviceConfig, data)
    except ConfigError as exc:
        assert exc.path, f"refusal without a field path: {exc}"
        assert str(exc).startswith(exc.path)
    else:
        printed = config.to_json_dict()
        assert parse_model(DeviceConfig, printed).to_json_dict() == printed


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_arbitrary_json_never_crashes_the_parser(value: Any) -> None:
    with contextlib.suppress(ConfigError):
        parse_model(AppInstanceConfig, value)


def test_a_field_given_under_both_names_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^apps\[0\]\.snapshot\.rollbackCmd: given twice"):
        parse_model(DeviceConfig, _mutate(["apps", 0, "snapshot", "rollback_cmd"], {"counter": 1}))


# ------------------------------------------------------------ proto3 JSON by the spec


def test_null_is_the_default_for_every_field_type() -> None:
    data = device(displayname=None, activate=None, restart=None, volumeRefList=None)
    data["apps"][0]["snapshot"] = {
        "activeSnapshot": None,
        "rollbackCmd": None,
        "maxSnapshots": None,
        "snapshots": None,
    }
    data["volumes"][0]["generationCount"] = None
    data["volumes"][0]["origin"]["type"] = None
    data["volumes"][0]["origin"]["downloadContentTreeID"] = None
    data["contentInfo"] = None
    app = parse_model(DeviceConfig, data).apps[0]
    assert (app.displayname, app.activate, app.restart, app.volume_ref_list) == ("", False, None, [])
    assert app.snapshot is not None
    assert (app.snapshot.active_snapshot, app.snapshot.rollback_cmd) == ("", None)
    assert (app.snapshot.max_snapshots, app.snapshot.snapshots) == (0, [])
    vol = parse_model(DeviceConfig, data).volumes[0]
    assert vol.generation_count == 0 and vol.origin is not None
    assert vol.origin.type is VolumeContentOriginType.VCOT_UNKNOWN


def test_an_unknown_enum_number_is_kept_and_printed_back() -> None:
    data = _mutate(["apps", 0, "snapshot", "snapshots", 0, "type"], 7)
    config = parse_model(DeviceConfig, data)
    assert config.apps[0].snapshot is not None
    kept = config.apps[0].snapshot.snapshots[0].type
    assert kept == 7 and not isinstance(kept, SnapshotType)
    assert config.to_json_dict()["apps"][0]["snapshot"]["snapshots"][0]["type"] == 7
    assert parse_model(DeviceConfig, config.to_json_dict()) == config


def test_uint64_takes_the_whole_range_and_int64_strings() -> None:
    data = device()
    data["contentInfo"][0]["maxSizeBytes"] = str(2**64 - 1)
    data["volumes"][0]["maxsizebytes"] = "1e3"
    config = parse_model(DeviceConfig, data)
    assert config.content_info[0].max_size_bytes == 2**64 - 1
    assert config.volumes[0].maxsizebytes == 1000
    assert config.to_json_dict()["contentInfo"][0]["maxSizeBytes"] == str(2**64 - 1)


def test_a_python_attribute_name_is_an_unknown_field_off_the_wire() -> None:
    data = device()
    data["apps"][0]["volume_ref_list"] = data["apps"][0].pop("volumeRefList")
    app = parse_model(DeviceConfig, data).apps[0]
    assert app.volume_ref_list == []
    assert app.model_extra is not None and "volume_ref_list" in app.model_extra

"""The typo guard: every unknown field is named with its nearest known name; --strict refuses."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from evesnap_core.errors import ConfigError
from evesnap_core.model.loader import load_device_config

APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
APP2 = "6ba7b816-9dad-41d1-80b4-00c04fd430c8"
VOL = "6ba7b811-9dad-41d1-80b4-00c04fd430c8"
TREE = "6ba7b815-9dad-41d1-80b4-00c04fd430c8"
SNAP = "6ba7b812-9dad-41d1-80b4-00c04fd430c8"


def config() -> dict[str, Any]:
    return {
        "apps": [
            {
                "uuidandversion": {"uuid": APP, "version": "1"},
                "activate": True,
                "volumeRefList": [{"uuid": VOL}],
                "fixedresources": {"memory": 1024},  # eve-api's, not acted on: no warning
                "interfaces": [],
            },
            {"uuidandversion": {"uuid": APP2}},
        ],
        "volumes": [
            {"uuid": VOL, "maxsizebytes": "4096", "origin": {"type": 2, "downloadContentTreeID": TREE}}
        ],
        "contentInfo": [{"uuid": TREE, "URL": "x.qcow2", "iformat": "QCOW2", "siginfo": {}}],
        "networks": [],
        "configItems": [],
    }


def test_eve_api_fields_evesnap_does_not_act_on_pass_silently() -> None:
    loaded = load_device_config(config(), strict=True)
    assert loaded.warnings == []


def test_the_three_typos_each_warn_with_the_nearest_name_on_the_app_that_uses_them() -> None:
    data = config()
    app = data["apps"][0]
    app["activte"] = app.pop("activate")
    app["volumeRefLst"] = app.pop("volumeRefList")
    data["volumes"][0]["maxsizebyte"] = data["volumes"][0].pop("maxsizebytes")
    data["apps"][0]["volumeRefList"] = [{"uuid": VOL}]  # so the volume still belongs to the app
    loaded = load_device_config(data)
    assert loaded.lines() == [
        "apps[0].activte: unknown field; did you mean activate?",
        "apps[0].volumeRefLst: unknown field; did you mean volumeRefList?",
        "volumes[0].maxsizebyte: unknown field; did you mean maxsizebytes?",
    ]
    per_app = loaded.per_app()
    assert per_app[uuid.UUID(APP)] == loaded.lines()
    assert uuid.UUID(APP2) not in per_app
    # kept as they came
    assert loaded.device.apps[0].model_extra == {
        "fixedresources": {"memory": 1024},
        "interfaces": [],
        "activte": True,
        "volumeRefLst": [{"uuid": VOL}],
    }


def test_nested_top_level_and_unmatched_names() -> None:
    data = config()
    data["apps"][1]["snapshot"] = {"snapshots": [{"id": SNAP, "tpye": 1}], "maxSnapshot": 2}
    data["contentInfo"][0]["sha265"] = "ab"
    data["zzqx"] = 1
    loaded = load_device_config(data)
    assert loaded.lines() == [
        "zzqx: unknown field",
        "apps[1].snapshot.maxSnapshot: unknown field; did you mean maxSnapshots?",
        "apps[1].snapshot.snapshots[0].tpye: unknown field; did you mean type?",
        "contentInfo[0].sha265: unknown field; did you mean sha256?",
    ]
    per_app = loaded.per_app()
    assert len(per_app[uuid.UUID(APP2)]) == 2
    assert per_app[uuid.UUID(APP)] == ["contentInfo[0].sha265: unknown field; did you mean sha256?"]


def test_unknown_enum_numbers_are_warnings_but_not_refused_by_strict() -> None:
    data = config()
    data["apps"][1]["snapshot"] = {"snapshots": [{"id": SNAP, "type": 7}]}
    loaded = load_device_config(data, strict=True)
    assert loaded.lines() == [
        "apps[1].snapshot.snapshots[0].type: SnapshotType number 7 is unknown to this version; kept"
    ]


@pytest.mark.parametrize(
    ("where", "key", "path"),
    [
        (["apps", 0], "activte", "apps[0].activte"),
        (["volumes", 0], "maxsizebyte", "volumes[0].maxsizebyte"),
        (["apps", 0], "volume_ref_list", "apps[0].volume_ref_list"),
    ],
)
def test_strict_refuses_an_unknown_field_in_one_line(where: list[Any], key: str, path: str) -> None:
    data = config()
    target: Any = data
    for part in where:
        target = target[part]
    target[key] = 1
    with pytest.raises(ConfigError) as info:
        load_device_config(data, strict=True)
    assert info.value.path == path
    assert "\n" not in str(info.value) and "--strict" in str(info.value)

"""Binary protobuf: a binary EdgeDevConfig means what its proto3 JSON means,
keeps the fields eve_proto does not define, and the reports go out as binary
ZInfoMsg that Google's runtime reads back."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from evesnap_core.errors import ConfigError
from evesnap_core.model.binary import (
    UNKNOWN_FIELDS,
    config_to_binary,
    info_messages_from_binary,
    info_messages_to_binary,
    is_binary,
)
from evesnap_core.model.loader import load_device_config

json_format = pytest.importorskip("google.protobuf.json_format")
from evesnap_core.model.eve_proto import config_message  # noqa: E402

from .test_proto3_crosscheck import Flags, configs, oracle  # noqa: E402

APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOL = "6ba7b811-9dad-41d1-80b4-00c04fd430c8"


@settings(max_examples=300, deadline=None)
@given(configs())
def test_a_binary_config_means_what_its_json_means(case: tuple[dict[str, Any], Flags]) -> None:
    data, _ = case
    expected = oracle(json.dumps(data), ignore_unknown=True)
    if expected is None:
        return  # proto3 refuses it: there is no binary of it
    wire = expected.SerializeToString()
    try:
        loaded = load_device_config(wire, binary=True)
    except ConfigError:
        # the binary carries the JSON's meaning; evesnap refuses it only where
        # it refuses the JSON too (an unknown enum name the lenient parse dropped)
        with pytest.raises(ConfigError):
            load_device_config(json.dumps(data))
        return
    again = config_message("EdgeDevConfig")
    again.ParseFromString(config_to_binary(loaded.device.to_json_dict()))
    assert again == expected


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    key = bytes([(number << 3) | wire_type])
    if wire_type == 2:
        return key + bytes([len(payload)]) + payload
    return key + payload


def unknown_of(msg: Any) -> bytes:
    copy = type(msg)()
    copy.CopyFrom(msg)
    for f, _ in copy.ListFields():
        copy.ClearField(f.name)
    return bytes(copy.SerializeToString())


def test_fields_without_a_definition_are_kept_and_written_back() -> None:
    config = config_message("EdgeDevConfig")
    json_format.ParseDict(
        {
            "apps": [{"uuidandversion": {"uuid": APP}, "volumeRefList": [{"uuid": VOL}]}],
            "volumes": [{"uuid": VOL}],
        },
        config,
    )
    # eve-api fields evesnap's definitions leave out: AppInstanceConfig.fixedresources (3,
    # a VmConfig with memory = 2), Volume.target (9), EdgeDevConfig.manufacturer (14)
    vm = _field(2, 0, b"\x80\x08")
    config.apps[0].MergeFromString(_field(3, 2, vm))
    config.volumes[0].MergeFromString(_field(9, 0, b"\x05"))
    config.MergeFromString(_field(14, 2, b"acme"))
    wire = config.SerializeToString()

    loaded = load_device_config(wire, binary=True, strict=True)
    assert loaded.warnings == []  # kept, not unknown to the typo guard
    printed = loaded.device.to_json_dict()
    assert base64.b64decode(printed["apps"][0][UNKNOWN_FIELDS]) == _field(3, 2, vm)
    assert base64.b64decode(printed[UNKNOWN_FIELDS]) == _field(14, 2, b"acme")

    back = config_message("EdgeDevConfig")
    back.ParseFromString(config_to_binary(printed))
    assert unknown_of(back) == unknown_of(config)
    assert unknown_of(back.apps[0]) == unknown_of(config.apps[0])
    assert unknown_of(back.volumes[0]) == unknown_of(config.volumes[0])
    assert back.apps[0].uuidandversion.uuid == APP


def test_not_protobuf_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="not a binary EdgeDevConfig"):
        load_device_config(b"\xff\xff\xff\xff", binary=True)


def test_binary_or_json_by_suffix_else_by_content() -> None:
    assert is_binary(Path("c.pb"), b"{") and is_binary(Path("c.bin"), b"") and is_binary(Path("c.binpb"), b"")
    assert not is_binary(Path("c.json"), b"\x0a\x02")
    assert is_binary(Path("config"), b"\x22\x05") and not is_binary(Path("config"), b'  {"apps": []}')
    assert not is_binary(Path("/dev/stdin"), b"")  # empty and unnamed: JSON (and refused as such)


def test_reports_as_binary_zinfo_msgs() -> None:
    messages = [
        {
            "ztype": "ZiApp",
            "devId": APP,
            "atTimeStamp": "2026-01-01T00:00:00Z",
            "ainfo": {"AppID": APP, "state": "RUNNING", "snapshots": [{"id": VOL, "type": 1}]},
        },
        {
            "ztype": "ZiVolume",
            "devId": APP,
            "vinfo": {"uuid": VOL, "resources": {"curSizeBytes": str(2**63 + 5)}, "generationCount": "2"},
        },
    ]
    found = info_messages_from_binary(info_messages_to_binary(messages))
    assert [m.ztype for m in found] == [3, 7]
    assert found[0].ainfo.snapshots[0].type == 1 and found[0].WhichOneof("InfoContent") == "ainfo"
    assert found[1].vinfo.resources.curSizeBytes == 2**63 + 5 and found[1].vinfo.generation_count == 2
    with pytest.raises(json_format.ParseError):  # never anything but eve-api's fields
        info_messages_to_binary([{"ztype": "ZiVolume", "vinfo": {"uuid": VOL, "backend": "qcow2"}}])

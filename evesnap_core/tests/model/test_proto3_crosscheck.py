"""evesnap's config loader against Google's proto3 JSON parser, on generated configs.

The oracle is `json_format.Parse` over message definitions written from
eve-api's field names, numbers and types (evesnap_core.model.eve_proto): every
config it accepts, evesnap accepts with the same meaning (evesnap's output
parsed again gives the equal protobuf message); every config it refuses,
evesnap refuses. Without `ignore_unknown_fields` the oracle refuses unknown
fields, as `--strict` does; with it, it matches evesnap's default (unknown
fields kept, warned about).

The generated configs vary what proto3 JSON leaves open: both field
spellings, enums as names, numbers, numeric strings and unknown numbers, int64
and uint64 as numbers, strings and exponents, null for any field, typos, and
wrong JSON types. They stay inside what evesnap can act on, which is stricter
than proto3 on purpose (docs/configuration.md): ids are UUIDs (never null),
references resolve, sizes and generations are not negative, ids are unique.

Left out as the Python parser's own leniencies, which Google's C++ and Go
parsers do not share and evesnap refuses: a bool or a non-integral float as an
enum (Python truncates 1.5 to 1), ``"+5"`` or ``"1_000"`` as an integer
(Python's int()), an empty list or string for a message field, one field under
both its spellings (Python keeps the last; evesnap refuses, as C++ and Go do,
tested in test_config_model.py); and under
`ignore_unknown_fields` a non-object for a message field (Python reads a string's
characters as field names, unknown, ignored) and an unknown enum *name* (Python
drops the field; evesnap cannot keep a name it does not know, so it refuses).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evesnap_core.errors import ConfigError
from evesnap_core.model.loader import load_device_config
from evesnap_core.model.proto import json_name

json_format = pytest.importorskip("google.protobuf.json_format")
from evesnap_core.model.eve_proto import config_message  # noqa: E402

SNAPSHOT_TYPES = ["SNAPSHOT_TYPE_UNSPECIFIED", "SNAPSHOT_TYPE_APP_UPDATE", "SNAPSHOT_TYPE_IMMEDIATE"]
ORIGIN_TYPES = ["VCOT_UNKNOWN", "VCOT_BLANK", "VCOT_DOWNLOAD"]
FORMATS = ["FmtUnknown", "RAW", "QCOW", "QCOW2", "VHD", "VMDK", "OVA", "VHDX", "CONTAINER", "ISO", "PVC"]


@dataclass
class Flags:
    unknown_enum_name: bool = False
    message_not_object: bool = False


class Gen:
    """Draws one config; remembers what the non-strict comparison must leave out."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.flags = Flags()

    def chance(self, percent: int) -> bool:
        return bool(self.draw(st.integers(0, 99)) < percent)

    def name(self, original: str) -> str:
        jname = json_name(original)
        return jname if jname == original else self.draw(st.sampled_from([original, jname]))

    def wrong(self) -> Any:
        """A value of some JSON type (often the wrong one for the field)."""
        return self.draw(
            st.sampled_from(
                [True, False, 0, 1, -1, 1.5, "", "x", "true", "12", "1e3", [], [1], {}, {"a": 1}, 2**64]
            )
        )

    def integer(self, low: int, high: int, non_negative: bool) -> Any:
        if self.chance(8):
            return None
        if self.chance(4):
            value = self.wrong()
            if non_negative and isinstance(value, int) and not isinstance(value, bool) and value < 0:
                return 1  # a negative size is evesnap's refusal, not proto3's
            return value
        lo = 0 if non_negative else low - 2
        number = self.draw(st.one_of(st.integers(lo, high + 2), st.sampled_from([low, high, high + 1, 0, 1])))
        if non_negative and number < 0:
            number = 0
        how = self.draw(st.sampled_from(["number", "string", "float", "exponent"]))
        if how == "string":
            return str(number)
        if how == "float" and abs(number) < 2**53:
            return float(number)
        if how == "exponent" and number % 1000 == 0 and number:
            return f"{number // 1000}e3"
        return number

    def string(self) -> Any:
        if self.chance(8):
            return None
        if self.chance(3):
            return self.wrong()
        return self.draw(st.text(max_size=8))

    def boolean(self) -> Any:
        if self.chance(8):
            return None
        if self.chance(5):
            return self.draw(st.sampled_from(["true", "false", 0, 1, "", None]))
        return self.draw(st.booleans())

    def enum(self, names: list[str]) -> Any:
        if self.chance(8):
            return None
        kind = self.draw(st.integers(0, 14))
        if kind <= 3 or kind >= 10:
            return self.draw(st.sampled_from(names))
        if kind <= 5:
            return self.draw(st.integers(0, len(names) - 1))
        if kind == 6:
            return str(self.draw(st.integers(0, len(names) + 3)))
        if kind == 7:
            return self.draw(st.sampled_from([len(names), 7, 99, -1, 2**31 - 1, 2**31, -(2**31) - 1]))
        if kind == 8:
            self.flags.unknown_enum_name = True
            return self.draw(st.sampled_from(["SNAPSHOT_TYPE_WEEKLY", "QCOW3", "vcot_blank", "1.0"]))
        value = self.draw(st.sampled_from(["", [], {}, 1.0, 2.0]))
        if value == "":
            self.flags.unknown_enum_name = True
        return value

    def message(self, build: Any) -> Any:
        """An object (or null, or a wrong type) for a message field."""
        if self.chance(6):
            return None
        if self.chance(2):
            self.flags.message_not_object = True
            return self.draw(st.sampled_from(["x", 1, True, [1]]))
        return build()

    def obj(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Fields under a random spelling, some left out; now and then a typo."""
        out: dict[str, Any] = {}
        for original, make in fields.items():
            required = original.startswith("!")
            original = original.lstrip("!")
            if not required and self.chance(25):
                continue
            out[self.name(original)] = make()
        if self.chance(5):
            key = self.draw(st.sampled_from(["activte", "maxsizebyte", "volumeRefLst", "tpye", "zz"]))
            out.setdefault(key, 1)
        return out

    def repeated(self, items: list[Any]) -> Any:
        if self.chance(5):
            return None
        if self.chance(2):
            return self.draw(st.sampled_from([{}, "x", [None]]))
        return items


def uuids(n: int, seed: int) -> list[str]:
    return [str(uuid.UUID(int=(seed << 64) + i + 1)) for i in range(n)]


@st.composite
def configs(draw: Any) -> tuple[dict[str, Any], Flags]:
    g = Gen(draw)
    apps = uuids(draw(st.integers(0, 2)), 1)
    volumes = uuids(draw(st.integers(0, 3)), 2)
    trees = uuids(draw(st.integers(0, 2)), 3)
    snap_ids = iter(uuids(8, 4))

    def counter() -> dict[str, Any]:
        return g.obj({"counter": lambda: g.integer(0, 2**32 - 1, False), "opsTime": g.string})

    def snapshot_config() -> dict[str, Any]:
        descs = [
            g.obj({"!id": lambda: next(snap_ids), "type": lambda: g.enum(SNAPSHOT_TYPES)})
            for _ in range(draw(st.integers(0, 3)))
        ]
        return g.obj(
            {
                "active_snapshot": g.string,
                "rollback_cmd": lambda: g.message(counter),
                "max_snapshots": lambda: g.integer(0, 2**32 - 1, False),
                "snapshots": lambda: g.repeated(descs),
            }
        )

    def app(app_id: str) -> dict[str, Any]:
        refs = [
            g.obj({"!uuid": lambda v=v: v, "generationCount": lambda: g.integer(0, 2**63 - 1, True)})
            for v in volumes
            if g.chance(60)
        ]
        return g.obj(
            {
                "!uuidandversion": lambda: g.obj({"!uuid": lambda: app_id, "version": g.string}),
                "displayname": g.string,
                "activate": g.boolean,
                "restart": lambda: g.message(counter),
                "purge": lambda: g.message(counter),
                "volumeRefList": lambda: g.repeated(refs),
                "snapshot": lambda: g.message(snapshot_config),
            }
        )

    def origin() -> dict[str, Any]:
        kind = g.enum(ORIGIN_TYPES)
        downloads = kind in ("VCOT_DOWNLOAD", 2, "2")
        if downloads and not trees:
            kind = "VCOT_BLANK"
            downloads = False
        tree = (lambda: draw(st.sampled_from(trees)).upper()) if downloads else g.string
        return g.obj(
            {"type": lambda: kind, "!downloadContentTreeID" if downloads else "downloadContentTreeID": tree}
        )

    def volume(volume_id: str) -> dict[str, Any]:
        return g.obj(
            {
                "!uuid": lambda: volume_id,
                "origin": origin,
                "generationCount": lambda: g.integer(0, 2**63 - 1, True),
                "maxsizebytes": lambda: g.integer(0, 2**63 - 1, True),
                "readonly": g.boolean,
                "displayName": g.string,
                "clear_text": g.boolean,
            }
        )

    def tree(tree_id: str) -> dict[str, Any]:
        return g.obj(
            {
                "!uuid": lambda: tree_id,
                "dsId": g.string,
                "URL": g.string,
                "iformat": lambda: g.enum(FORMATS),
                "sha256": g.string,
                "maxSizeBytes": lambda: g.integer(0, 2**64 - 1, True),
                "displayName": g.string,
                "generation_count": lambda: g.integer(0, 2**63 - 1, True),
            }
        )

    data = {
        "apps": [app(a) for a in apps],
        "volumes": [volume(v) for v in volumes],
        "contentInfo": [tree(t) for t in trees],
    }
    return data, g.flags


def oracle(text: str, ignore_unknown: bool) -> Any:
    message = config_message("EdgeDevConfig")
    try:
        json_format.Parse(text, message, ignore_unknown_fields=ignore_unknown)
    except json_format.ParseError:
        return None
    return message


def same_meaning(expected: Any, printed: dict[str, Any], ignore_unknown: bool) -> None:
    again = config_message("EdgeDevConfig")
    json_format.Parse(json.dumps(printed), again, ignore_unknown_fields=ignore_unknown)
    assert again == expected, (again, expected)


def check(data: dict[str, Any], flags: Flags) -> tuple[bool, bool]:
    text = json.dumps(data)
    strict = oracle(text, ignore_unknown=False)
    try:
        loaded = load_device_config(text, strict=True)
    except ConfigError as exc:
        assert strict is None, f"evesnap --strict refused what proto3 accepts: {exc}\n{text}"
    else:
        assert strict is not None, f"evesnap --strict accepted what proto3 refuses:\n{text}"
        same_meaning(strict, loaded.device.to_json_dict(), ignore_unknown=False)

    if flags.unknown_enum_name or flags.message_not_object:
        return strict is not None, False
    lenient = oracle(text, ignore_unknown=True)
    try:
        loaded = load_device_config(text)
    except ConfigError as exc:
        assert lenient is None, (
            f"evesnap refused what proto3 (ignoring unknown fields) accepts: {exc}\n{text}"
        )
    else:
        assert lenient is not None, f"evesnap accepted what proto3 refuses:\n{text}"
        same_meaning(lenient, loaded.device.to_json_dict(), ignore_unknown=True)
    return strict is not None, lenient is not None


@settings(max_examples=400, deadline=None)
@given(configs())
def test_generated_configs_mean_the_same_to_evesnap_and_to_protobuf(
    case: tuple[dict[str, Any], Flags],
) -> None:
    check(*case)


def test_the_generator_reaches_both_verdicts() -> None:
    """The property above is worth something only if both outcomes occur often."""
    seen = {True: 0, False: 0}

    @settings(max_examples=200, deadline=None, database=None)
    @given(configs())
    def count(case: tuple[dict[str, Any], Flags]) -> None:
        strict, _ = check(*case)
        seen[strict] += 1

    count()
    assert seen[True] >= 20 and seen[False] >= 20, seen


CASES = [
    ({"apps": [{"uuidandversion": {"uuid": str(uuid.UUID(int=1))}, "displayname": None}]}, True),
    ({"apps": [{"uuidandversion": {"uuid": str(uuid.UUID(int=1))}, "activate": "true"}]}, False),
    ({"apps": [{"uuidandversion": {"uuid": str(uuid.UUID(int=1))}, "snapshot": {"snapshots": None}}]}, True),
    (
        {
            "apps": [
                {
                    "uuidandversion": {"uuid": str(uuid.UUID(int=1))},
                    "snapshot": {"snapshots": [{"id": str(uuid.UUID(int=2)), "type": 7}]},
                }
            ]
        },
        True,
    ),
    ({"contentInfo": [{"uuid": str(uuid.UUID(int=3)), "maxSizeBytes": str(2**64 - 1)}]}, True),
    ({"contentInfo": [{"uuid": str(uuid.UUID(int=3)), "maxSizeBytes": 2**64}]}, False),
    ({"volumes": [{"uuid": str(uuid.UUID(int=4)), "maxsizebytes": "1e3", "generationCount": "7"}]}, True),
    ({"apps": [{"uuidandversion": {"uuid": str(uuid.UUID(int=1))}, "activte": True}]}, False),
]


@pytest.mark.parametrize(("data", "accepted"), CASES)
def test_the_issue_s_cases(data: dict[str, Any], accepted: bool) -> None:
    assert (oracle(json.dumps(data), ignore_unknown=False) is not None) is accepted
    strict, _ = check(data, Flags())
    assert strict is accepted


def test_every_modelled_field_has_protobuf_s_names() -> None:
    """evesnap's two spellings of each field are the runtime's name and json_name."""
    from evesnap_core.model import config as cfg
    from evesnap_core.model.proto import wire_names

    pairs = {
        "EdgeDevConfig": cfg.DeviceConfig,
        "AppInstanceConfig": cfg.AppInstanceConfig,
        "UUIDandVersion": cfg.UUIDandVersion,
        "InstanceOpsCmd": cfg.InstanceOpsCmd,
        "SnapshotConfig": cfg.SnapshotConfig,
        "SnapshotDesc": cfg.SnapshotDesc,
        "VolumeRef": cfg.VolumeRef,
        "Volume": cfg.Volume,
        "VolumeContentOrigin": cfg.VolumeContentOrigin,
        "ContentTree": cfg.ContentTree,
    }
    for name, model in pairs.items():
        fields = config_message(name).DESCRIPTOR.fields
        assert wire_names(model).wire == {f.name for f in fields} | {f.json_name for f in fields}, name

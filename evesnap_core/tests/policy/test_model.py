"""The policy file: TOML and JSON, merging over the default, errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from evesnap_core.errors import ConfigError
from evesnap_core.policy.model import MinFree, load_policy, parse_policy

GOOD = b"""
timezone = "Europe/Paris"

[default]
schedules = { hourly = "0 * * * *" }
min_free = "10%"

[default.retention]
hourly = 24
daily = 7

[default.hooks]
pre = ["/bin/true"]
timeout = 5

[apps.shop]
schedules = { often = "*/15 * * * *" }

[apps.6ba7b810-9dad-41d1-80b4-00c04fd430c8]
enabled = false
"""


def test_toml_merges_app_sections_over_the_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(GOOD)
    policy = load_policy(path)
    shop = policy.effective("shop")
    assert shop.schedules == {"often": "*/15 * * * *"}  # replaced, not merged
    assert shop.retention is not None and shop.retention.describe() == "hourly=24, daily=7"  # inherited
    assert shop.hooks.pre == ["/bin/true"] and shop.hooks.timeout == 5
    assert shop.min_free is not None and shop.min_free.percent == 10
    assert shop.enabled and shop.section == "apps.shop"
    assert not policy.effective("6ba7b810-9dad-41d1-80b4-00c04fd430c8").enabled
    assert policy.effective(None).schedules == {"hourly": "0 * * * *"}


def test_json_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(
        '{"default": {"schedules": {"d": "@daily"}, "retention": {"daily": 3}, "min_free": 1048576}}'
    )
    eff = load_policy(path).effective(None)
    assert eff.schedules == {"d": "@daily"} and eff.min_free is not None and eff.min_free.bytes == 1048576


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        (b'[apps.shop]\nschedules = { h = "61 * * * *" }', "apps.shop.schedules.h", "minute: 61"),
        (b"[default.retention]\nhourly = -1", "default.retention.hourly", "greater than or equal to 0"),
        (b"[default.retention]\nhourly = 0", "default.retention", "keeps nothing"),
        (b"[default]\nretension = 1", "default.retension", "Extra inputs"),
        (b'[default]\nmin_free = "lots"', "default.min_free", "not a size"),
        (b'[default]\nmin_free = "120%"', "default.min_free", "at most 100"),
        (b"[default.hooks]\npre = []", "default.hooks.pre", "at least 1"),
        (b'[default.hooks]\npre = ["/bin/true"]\ntimeout = 0', "default.hooks.timeout", "greater than 0"),
        (b'timezone = "Mars/Olympus"', "timezone", "unknown time zone"),
        (b'[default]\nschedules = { "a b" = "@daily" }', "default.schedules", "schedule name"),
        (b"[default\n", "", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, text: bytes, where: str, why: str) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert info.value.path == (f"{path}: {where}" if where else str(path))
    assert why in info.value.reason


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")


def test_min_free_units() -> None:
    assert MinFree.parse("512M").bytes == 512 << 20
    assert MinFree.parse("2GiB").bytes == 2 << 30
    assert MinFree.parse(1000).bytes == 1000
    assert MinFree.parse("1.5K").bytes == 1536
    assert MinFree.parse("25%").floor_bytes(1000) == 250
    with pytest.raises(ValueError):
        MinFree.parse(True)


def test_parse_policy_from_bytes() -> None:
    assert parse_policy(b"", "x").effective(None).schedules == {}

"""The proto3 JSON mapping, for pydantic models of the controller's API.

A proto3 JSON parser accepts a field under its original name
(``active_snapshot``) and under its JSON name (``activeSnapshot``: underscores
dropped, the next letter upper-cased); enums by name or by number; 64-bit
integers as a JSON string or a number. Printers emit the JSON name, enum names
and 64-bit integers as strings. Python attributes are snake_case.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from evesnap_core.model.validation import field_error

UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1


def json_name(original: str) -> str:
    """protoc's ToJsonName: drop each underscore and upper-case the letter after it."""
    return re.sub(r"_+([a-zA-Z0-9])", lambda m: m.group(1).upper(), original)


def pfield(original: str, default: Any = ..., **kwargs: Any) -> Any:
    """A model field known to the wire under `original` and its proto3 JSON name."""
    jname = json_name(original)
    names = [original] if jname == original else [original, jname]
    if "default_factory" not in kwargs:
        kwargs["default"] = default
    return Field(
        validation_alias=AliasChoices(*names),
        serialization_alias=jname,
        **kwargs,
    )


def _parse_int64(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]+", value.strip()):
            raise ValueError(f"expected an integer (number or decimal string), got {value!r}")
        return int(value.strip())
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    return value


def _parse_uint32(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    return value


Int64 = Annotated[
    int,
    BeforeValidator(_parse_int64),
    Field(ge=-INT64_MAX - 1, le=INT64_MAX),
    PlainSerializer(str, return_type=str, when_used="json"),
]
"""int64: a JSON string or number in, a string out (proto3 JSON)."""

NonNegInt64 = Annotated[Int64, Field(ge=0)]

UInt32 = Annotated[int, BeforeValidator(_parse_uint32), Field(ge=0, le=UINT32_MAX)]


def enum_parser(enum_type: type[enum.IntEnum]) -> Any:
    """A validator that takes an enum by name or number and names the bad value."""

    by_name = dict(enum_type.__members__)

    def parse(value: Any) -> enum.IntEnum:
        if isinstance(value, enum_type):
            return value
        if isinstance(value, bool):
            raise ValueError(f"expected a {enum_type.__name__} name or number, got a boolean")
        if isinstance(value, str):
            key = value.strip()
            if key in by_name:
                return by_name[key]
            if re.fullmatch(r"-?[0-9]+", key):
                value = int(key)
            else:
                raise ValueError(
                    f"unknown {enum_type.__name__} value {value!r} "
                    f"(known: {', '.join(enum_type.__members__)})"
                )
        if isinstance(value, int):
            try:
                return enum_type(value)
            except ValueError:
                raise ValueError(
                    f"unknown {enum_type.__name__} number {value} "
                    f"(known: {', '.join(f'{m.name}={m.value}' for m in enum_type)})"
                ) from None
        raise ValueError(f"expected a {enum_type.__name__} name or number, got {value!r}")

    return BeforeValidator(parse)


ENUM_AS_NAME = PlainSerializer(lambda v: v.name, return_type=str, when_used="json")
"""Print an enum by its name, as proto3 JSON printers do."""


_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {}


def _name_pairs(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(original, JSON) names of the fields whose two names differ, per class, once."""
    pairs = _PAIRS.get(cls)
    if pairs is None:
        found = []
        for info in cls.model_fields.values():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices) and len(alias.choices) == 2:
                found.append((str(alias.choices[0]), str(alias.choices[1])))
        pairs = _PAIRS[cls] = tuple(found)
    return pairs


class ProtoMessage(BaseModel):
    """Base of every API message: both field names in, JSON names out.

    Unknown fields are kept (``extra="allow"``): a controller sends much that
    evesnap does not model, and a stored config must give it all back on rollback.
    """

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_enum_values=False,
        validate_default=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _one_name_per_field(cls, data: Any) -> Any:
        """A field given under both its names is ambiguous: proto3 parsers refuse it."""
        if isinstance(data, dict):
            for original, jname in _name_pairs(cls):
                if original in data and jname in data:
                    raise field_error(jname, f"given twice, as {original} and {jname}")
        return data

    def to_json_dict(self) -> dict[str, Any]:
        """The message in the proto3 JSON mapping, ready for json.dumps."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

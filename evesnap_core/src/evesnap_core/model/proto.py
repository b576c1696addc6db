"""The proto3 JSON mapping, for pydantic models of the controller's API.

A proto3 JSON parser accepts a field under its original name
(``active_snapshot``) and under its JSON name (``activeSnapshot``: underscores
dropped, the next letter upper-cased); ``null`` for any field as that field's
default; enums by name or by number, and a number the schema does not name is
kept (proto3 enums are open: a newer controller may send one); integers as a
JSON number or a string (an integral value, exponents allowed), within the
field's range (uint64 takes all of 0..2^64-1); a bool only as ``true`` or
``false``; a string only as a JSON string. Anything else is refused, naming
the field. Printers emit the JSON name, enum names (numbers for unknown ones)
and 64-bit integers as strings. Python attributes are snake_case.
"""

from __future__ import annotations

import enum
import math
import re
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    model_validator,
)

from evesnap_core.model.validation import WIRE, field_error

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


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


_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_NUMBER_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def parse_integer(value: Any) -> int:
    """An integer field's JSON value: a number or a decimal string with an integral value."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if isinstance(value, str):
        if _INTEGER_TEXT.fullmatch(value):
            return int(value)
        if _NUMBER_TEXT.fullmatch(value):
            number = float(value)
            if math.isfinite(number) and number.is_integer():
                return int(number)
        raise ValueError(f"expected an integer (number or decimal string), got {value!r}")
    raise ValueError(f"expected an integer, got {_json_kind(value)}")


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false (without quotes), got {_json_kind(value)}")


def _parse_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {_json_kind(value)}")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _as_str(value: int) -> str:
    return str(value)


# The range comes before the parser in each: it then applies to the int schema
# itself (checked by pydantic-core) instead of as a Python step after the parser.

Int64 = Annotated[
    int,
    Field(ge=-INT64_MAX - 1, le=INT64_MAX),
    BeforeValidator(parse_integer),
    PlainSerializer(_as_str, return_type=str, when_used="json"),
]
"""int64: a JSON string or number in, a string out (proto3 JSON)."""

NonNegInt64 = Annotated[
    int,
    Field(ge=0, le=INT64_MAX),
    BeforeValidator(parse_integer),
    PlainSerializer(_as_str, return_type=str, when_used="json"),
]

UInt64 = Annotated[
    int,
    Field(ge=0, le=UINT64_MAX),
    BeforeValidator(parse_integer),
    PlainSerializer(_as_str, return_type=str, when_used="json"),
]
"""uint64: the whole range 0..2^64-1; a string out (proto3 JSON)."""

UInt32 = Annotated[int, Field(ge=0, le=UINT32_MAX), BeforeValidator(parse_integer)]

Bool = Annotated[bool, BeforeValidator(_parse_bool)]
"""bool: only JSON true or false (a proto3 parser refuses "true")."""

Str = Annotated[str, BeforeValidator(_parse_str)]
"""string: only a JSON string."""


def enum_parser(enum_type: type[enum.IntEnum]) -> Any:
    """A validator that takes an enum by name or number and names the bad value.

    A number the enum does not name is kept as a plain int (proto3 enums are
    open); an unknown name is refused (the name cannot be carried).
    """

    by_name = dict(enum_type.__members__)
    by_number = {m.value: m for m in enum_type}

    def parse(value: Any) -> int:
        if isinstance(value, enum_type):
            return value
        if isinstance(value, str):
            if value in by_name:
                return by_name[value]
            if not _INTEGER_TEXT.fullmatch(value):
                raise ValueError(
                    f"unknown {enum_type.__name__} value {value!r} "
                    f"(known: {', '.join(enum_type.__members__)})"
                )
        try:
            number = parse_integer(value)
        except ValueError:
            raise ValueError(
                f"expected a {enum_type.__name__} name or number, got {_json_kind(value)}"
            ) from None
        if not INT32_MIN <= number <= INT32_MAX:
            raise ValueError(f"{enum_type.__name__} number {number} is out of range (enums are int32)")
        return by_number.get(number, number)

    return PlainValidator(parse)


def _enum_out(value: int) -> str | int:
    return value.name if isinstance(value, enum.IntEnum) else int(value)


ENUM_AS_NAME = PlainSerializer(_enum_out, when_used="json")
"""Print an enum by its name (an unknown number as the number), as proto3 JSON printers do."""


def enum_label(value: int) -> str:
    """A known value's name, or ``number N`` for one this version does not know."""
    return value.name if isinstance(value, enum.IntEnum) else f"number {int(value)}"


class _WireNames:
    """What a message class knows of its fields' names, computed once per class."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self.pairs: list[tuple[str, str]] = []
        self.wire: set[str] = set()
        self.python_only: set[str] = set()
        for attr, info in cls.model_fields.items():
            alias = info.validation_alias
            names = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [attr]
            self.wire.update(names)
            if len(names) == 2:
                self.pairs.append((names[0], names[1]))
            if attr not in names:
                self.python_only.add(attr)
        self.originals = frozenset(original for original, _ in self.pairs)
        """The original names that have another JSON name: only an input with one
        of them can give a field twice."""


_NAMES: dict[type, _WireNames] = {}


def wire_names(cls: type[BaseModel]) -> _WireNames:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = _WireNames(cls)
    return names


class ProtoMessage(BaseModel):
    """Base of every API message: both field names in, JSON names out.

    Unknown fields are kept (``extra="allow"``): a controller sends much that
    evesnap does not model, and a stored config must give it all back on rollback.
    ``null`` for a known field is its default. Off the wire (context `WIRE`), a
    key that is only a Python attribute name (``volume_ref_list``) is an unknown
    field like any other, as a proto3 parser sees it.
    """

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_enum_values=False,
        validate_default=False,
        defer_build=True,
    )

    @model_validator(mode="wrap")
    @classmethod
    def _proto3_names(cls, data: Any, handler: Any, info: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        names = _NAMES.get(cls) or wire_names(cls)
        # the common cases cost a set and a scan in C: JSON names only, no null
        if not names.originals.isdisjoint(data):
            for original, jname in names.pairs:
                if original in data and jname in data:  # ambiguous: proto3 parsers refuse it
                    raise field_error(jname, f"given twice, as {original} and {jname}")
        cleaned = data
        if None in data.values():
            cleaned = {k: v for k, v in data.items() if not (v is None and k in names.wire)}
        hidden: dict[str, Any] = {}
        if info.context and info.context.get(WIRE):
            if cleaned is data:
                cleaned = dict(data)  # the caller's dict is never changed
            hidden = {k: cleaned.pop(k) for k in list(cleaned) if k in names.python_only}
        model = handler(cleaned)
        if hidden and model.__pydantic_extra__ is not None:
            model.__pydantic_extra__.update(hidden)
        return model

    def to_json_dict(self) -> dict[str, Any]:
        """The message in the proto3 JSON mapping, ready for json.dumps."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

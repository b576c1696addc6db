"""Reading state files tolerantly, but never silently wrong.

The rules come from the reference (EVE's snapshot status files): a missing
mandatory field is an error that names the field and the file ("Critical field
X missing in stored data in FILE"); a missing optional field or an unknown
extra field loads, with a warning, so that an older evesnap reads a newer
file and the other way round. Unknown fields are kept and written back, so a
downgrade followed by an upgrade loses nothing.

Every file carries ``SchemaVersion``. Files of an older version are brought
up to date by the file type's migrations before they are checked; a newer
version loads what this evesnap knows, with a warning.

Reading has two paths that give the same result. The fast one validates the
bytes with pydantic-core's JSON parser and then checks, on the validated
value, that the file is exactly what this evesnap writes: the current schema,
every field present (recursively into stored structures) and no unknown one.
Anything else (a parse or validation error, an older or newer schema, a
missing optional or an unknown field) is read again by the detailed path,
which walks the fields and says what is missing, tolerated or wrong.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evesnap_core.durable import kind_of, read_regular
from evesnap_core.errors import StateError, UnsafePath

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 32 << 20
"""The most a state file may hold (32 MiB; docs/state.md). evesnap's own are far
smaller (a device config of 1,000 apps is about 2 MiB); a bigger one is damage,
and is set aside unread instead of being read whole into memory."""
MAX_STATE_DEPTH = 201
"""The deepest nesting a state file may have: a config is refused past 100 levels
(model/validation.py), and a state file wraps it in a few more. It is the depth
pydantic-core's JSON parser itself takes (its recursion limit of 200 below the
document), so that the fast read, which leaves the bound to that parser, and
the detailed one, which counts, draw the line at the same place."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]


class StoredModel(BaseModel):
    """A structure inside a state file: Go-style names on disk, unknown fields kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class StoredFile(StoredModel):
    """A whole state file."""

    SCHEMA: ClassVar[int] = 1
    """The schema version this evesnap writes."""
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {}
    """Version N -> a function that turns a version-N document into version N+1."""

    schema_version: int = Field(alias="SchemaVersion", strict=True)
    """Strict: ``true``, ``1.0`` or ``"1"`` is not a schema version (the fast path relies on it)."""

    def dump(self) -> bytes:
        """The file's bytes: stable key order, so an unchanged record writes the same bytes."""
        return self.model_dump_json(by_alias=True).encode()


F = TypeVar("F", bound=StoredFile)


@dataclass
class Loaded(Generic[F]):
    """A file read, and what was tolerated while reading it."""

    value: F
    warnings: list[str] = field(default_factory=list)


def read_state_bytes(path: str | Path) -> bytes:
    """The bytes of the state file `path`, read defensively (`durable.read_regular`):
    only a regular file, opened without following a link or waiting, checked with
    fstat first, at most MAX_STATE_BYTES. Anything else raises StateError saying
    what it is; OSError (FileNotFoundError, EACCES, ...) goes to the caller."""
    try:
        return read_regular(path, MAX_STATE_BYTES)
    except UnsafePath as exc:
        what = str(exc).split(": evesnap writes nothing", 1)[0].removeprefix(f"{exc.path} is ")
        raise StateError(exc.path, f"stored data is {what}") from None


file_kind = kind_of


_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def too_deep(raw: bytes | str, limit: int = MAX_STATE_DEPTH) -> bool:
    """Whether the JSON text `raw` nests arrays and objects more than `limit` deep
    (brackets inside strings do not count). Cheap when it cannot be: a text with
    fewer brackets than `limit` is not scanned."""
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def read_stored(model: type[F], path: Path) -> Loaded[F]:
    """Read `path` as `model`, or raise StateError naming the file and what is wrong."""
    try:
        raw = read_state_bytes(path)
    except FileNotFoundError:
        raise StateError(str(path), "stored data missing") from None
    except OSError as exc:
        raise StateError(str(path), f"stored data unreadable ({exc.strerror})") from None
    return parse_stored(model, raw, str(path))


def parse_stored(model: type[F], raw: bytes | str, where: str, fast: bool = True) -> Loaded[F]:
    """Parse `raw` as `model`; `fast=False` always takes the detailed path (same result).

    The fast path needs no depth check of its own: pydantic-core's JSON parser
    refuses a text nested deeper than MAX_STATE_DEPTH (its own recursion limit; a
    test holds the two equal), and the refusal sends the file to
    the detailed path, which bounds the depth before `json` reads it."""
    if fast and _plain(raw):
        try:
            value = model.model_validate_json(raw)
        except (ValidationError, ValueError, RecursionError):
            pass
        else:
            if value.schema_version == model.SCHEMA and _complete(value, _plan(model)):
                return Loaded(value, [])
    return _parse_detailed(model, raw, where)


def _plain(raw: bytes | str) -> bool:
    """No ``schema_version`` (the Python name, which the detailed path does not take for
    SchemaVersion) and no ``\\u`` escape that could spell it: what evesnap writes."""
    if isinstance(raw, str):
        return "schema_version" not in raw and "\\u" not in raw
    return b"schema_version" not in raw and b"\\u" not in raw


def _complete(value: StoredModel, plan: _Plan) -> bool:
    """Every field of `value` given and none unknown, recursively into stored structures."""
    if value.__pydantic_extra__ or len(value.__pydantic_fields_set__) != plan.count:
        return False
    for name, kind, inner in plan.nested:
        item = getattr(value, name)
        items: Iterable[Any]
        if kind == "one":
            items = (item,)
        elif kind == "list":
            items = item if isinstance(item, list) else ()
        else:
            items = item.values() if isinstance(item, dict) else ()
        sub = _plan(inner)
        for one in items:
            if isinstance(one, StoredModel) and not _complete(one, sub):
                return False
    return True


def _parse_detailed(model: type[F], raw: bytes | str, where: str) -> Loaded[F]:
    if too_deep(raw):
        raise StateError(where, f"stored data is nested more than {MAX_STATE_DEPTH} levels deep")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise StateError(where, f"stored data is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StateError(where, f"stored data is a JSON {type(data).__name__}, not an object")
    warnings: list[str] = []
    data = _upgrade(model, data, where, warnings)
    _check_fields(model, data, "", where, warnings)
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise StateError(where, f"field {place}: {first['msg']} in stored data") from None
    except RecursionError:
        raise StateError(where, "stored data is nested too deeply") from None
    for warning in warnings:
        log.warning("%s", warning)
    return Loaded(value, warnings)


def _upgrade(
    model: type[StoredFile], data: dict[str, Any], where: str, warnings: list[str]
) -> dict[str, Any]:
    version = data.get("SchemaVersion")
    if version is None:
        raise StateError(where, "Critical field SchemaVersion missing in stored data")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StateError(where, f"field SchemaVersion: {version!r} is not a schema version")
    if version > model.SCHEMA:
        warnings.append(
            f"{where} was written with schema {version} by a newer evesnap (this one knows "
            f"{model.SCHEMA}): loading the fields it knows, keeping the others"
        )
        return data
    while version < model.SCHEMA:
        migrate = model.MIGRATIONS.get(version)
        if migrate is None:
            raise StateError(where, f"no migration from schema {version} of {model.__name__}")
        data = migrate(dict(data))
        version += 1
        data["SchemaVersion"] = version
    return data


@dataclass(frozen=True)
class _Field:
    key: str
    """The name on disk (the alias)."""
    name: str
    required: bool
    nested: tuple[str, type[StoredModel]] | None


@dataclass(frozen=True)
class _Plan:
    """What the reader needs to know of a model, worked out once per class."""

    fields: tuple[_Field, ...]
    known: frozenset[str]
    """Both names of every field."""
    stored: bool
    """Unknown fields are warned about (a stored structure)."""
    count: int
    nested: tuple[tuple[str, str, type[StoredModel]], ...]
    """(attribute, "one" | "list" | "dict", model) of the fields holding stored structures."""


@functools.cache
def _plan(model: type[BaseModel]) -> _Plan:
    fields = []
    for name, info in model.model_fields.items():
        fields.append(_Field(info.alias or name, name, info.is_required(), _stored_type(info.annotation)))
    return _Plan(
        fields=tuple(fields),
        known=frozenset(n for f in fields for n in (f.key, f.name)),
        stored=issubclass(model, StoredModel),
        count=len(fields),
        nested=tuple((f.name, *f.nested) for f in fields if f.nested is not None),
    )


def _check_fields(
    model: type[BaseModel], data: Mapping[str, Any], prefix: str, where: str, warnings: list[str]
) -> None:
    """Mandatory fields present (recursively into stored structures), the rest warned about."""
    plan = _plan(model)
    for f in plan.fields:
        key = f.key
        if key in data:
            value = data[key]
        elif f.name in data:
            value = data[f.name]
        else:
            if f.required:
                raise StateError(where, f"Critical field {prefix}{key} missing in stored data")
            warnings.append(f"optional field {prefix}{key} missing in {where}: using its default")
            continue
        if f.nested is None:
            continue
        kind, inner = f.nested
        if kind == "one" and isinstance(value, Mapping):
            _check_fields(inner, value, f"{prefix}{key}.", where, warnings)
        elif kind == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    _check_fields(inner, item, f"{prefix}{key}[{i}].", where, warnings)
        elif kind == "dict" and isinstance(value, Mapping):
            for k, item in value.items():
                if isinstance(item, Mapping):
                    _check_fields(inner, item, f"{prefix}{key}[{k}].", where, warnings)
    if plan.stored:
        for extra in sorted(set(data) - plan.known):
            warnings.append(f"unknown field {prefix}{extra} in {where}: kept as it is")


def _stored_type(annotation: Any) -> tuple[str, type[StoredModel]] | None:
    """Whether a field holds stored structures: one, a list of them or a dict of them."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _stored_type(arg)
        return None
    if origin is list:
        inner = typing.get_args(annotation)[0]
        return ("list", inner) if _is_stored(inner) else None
    if origin is dict:
        inner = typing.get_args(annotation)[1]
        return ("dict", inner) if _is_stored(inner) else None
    return ("one", annotation) if _is_stored(annotation) else None


def _is_stored(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, StoredModel)

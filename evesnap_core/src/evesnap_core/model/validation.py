"""Turning pydantic's validation errors into ConfigErrors that name the field path."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from evesnap_core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

FIELD_ERROR = "evesnap_field"

WIRE = "proto3-wire"
"""Validation context key: the data came off the wire (a file, a socket), not from Python code."""


def field_error(path: str, reason: str) -> PydanticCustomError:
    """An error a model validator raises about a field below the model (`path` relative)."""
    return PydanticCustomError(FIELD_ERROR, "{path}: {reason}", {"path": path, "reason": reason})


DOCUMENT = "(document)"
"""The path of the document itself (not an object, or an unnamed field)."""


def _join(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (str(part) or '""')
    return out


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """The first error of `exc`, as one line that names the field path."""
    err = exc.errors(include_url=False)[0]
    path = _join(tuple(err["loc"]))
    reason = err["msg"]
    if err["type"] == FIELD_ERROR:
        ctx = err.get("ctx") or {}
        rel = str(ctx.get("path", ""))
        path = f"{path}.{rel}" if path and rel and not rel.startswith("[") else path + rel
        reason = str(ctx.get("reason", reason))
    elif reason.startswith("Value error, "):
        reason = reason[len("Value error, ") :]
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    path = path or DOCUMENT
    more = len(exc.errors()) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(path, reason)


MAX_DEPTH = 100
"""Nesting a config may have (protobuf parsers stop at 100 as well): deeper
documents could not be stored or printed again."""


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _check_tree(value: Any, loc: tuple[Any, ...], prefix: str) -> None:
    """Refuse what JSON text cannot carry back out: nesting beyond MAX_DEPTH,
    strings (values or keys) that are not valid UTF-8 (lone surrogates), and
    floats that are not finite (a Python caller's inf or NaN)."""
    if len(loc) > MAX_DEPTH:
        raise ConfigError(_prefixed(prefix, _join(loc)), f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        # json.dumps would write it as null (pydantic) or Infinity (not JSON): never silently
        raise ConfigError(_prefixed(prefix, _join(loc)), f"{value!r} is not a JSON number")
    if isinstance(value, str):
        if not _is_utf8(value):
            raise ConfigError(_prefixed(prefix, _join(loc)), "not valid UTF-8 (a lone surrogate)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not _is_utf8(key):
                raise ConfigError(_prefixed(prefix, _join((*loc, ascii(key)))), "field name not valid UTF-8")
            _check_tree(item, (*loc, key), prefix)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_tree(item, (*loc, i), prefix)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _prefixed(prefix: str, path: str) -> str:
    if prefix:
        return f"{prefix}.{path}" if path else prefix
    return path or DOCUMENT


def parse_model(model: type[M], data: Any, prefix: str = "") -> M:
    """Validate `data` (a dict, or JSON text or bytes) as `model`, or raise ConfigError."""
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data, parse_constant=_not_json)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(prefix, f"not valid JSON: {exc}") from None
        except RecursionError:
            raise ConfigError(prefix, f"not valid JSON: nested more than {MAX_DEPTH} levels deep") from None
    _check_tree(data, (), prefix)
    try:
        return model.model_validate(data, context={WIRE: True})
    except ValidationError as exc:
        raise config_error(exc, prefix) from None


MAX_FREE_TEXT = 256
"""Characters an operator's free-text field (a display name) may hold."""


def free_text(value: str, field: str) -> str:
    """`value` if it is one printable line of at most MAX_FREE_TEXT characters;
    else ConfigError naming `field` and what is wrong (a newline or another
    control character breaks the one-line output; a format character, such as
    the right-to-left mark U+200F, makes a name look like another)."""
    if len(value) > MAX_FREE_TEXT:
        raise ConfigError(field, f"longer than {MAX_FREE_TEXT} characters ({len(value)})")
    for char in value:
        if char.isprintable():
            continue
        code = f"U+{ord(char):04X}"
        if char in "\n\r":
            raise ConfigError(field, f"a newline ({code}) is not allowed: one line only")
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ConfigError(field, f"a control character ({code}) is not allowed")
        name = unicodedata.name(char, "unnamed")
        raise ConfigError(field, f"an invisible character ({code} {name}) is not allowed")
    return value

"""Turning pydantic's validation errors into ConfigErrors that name the field path."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from evesnap_core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

FIELD_ERROR = "evesnap_field"


def field_error(path: str, reason: str) -> PydanticCustomError:
    """An error a model validator raises about a field below the model (`path` relative)."""
    return PydanticCustomError(FIELD_ERROR, "{path}: {reason}", {"path": path, "reason": reason})


def _join(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
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
    more = len(exc.errors()) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(path, reason)


def parse_model(model: type[M], data: Any, prefix: str = "") -> M:
    """Validate `data` (a dict, or JSON text or bytes) as `model`, or raise ConfigError."""
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(prefix, f"not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, prefix) from None

"""Reading a controller's device config: one path for `apply`, the agent and tests.

Parsing (proto3 JSON, model.proto) and the typo guard (model.unknown_fields)
are two steps; this puts them together so that every reader of a config file
reports the same warnings and refuses the same things under ``--strict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from evesnap_core.errors import ConfigError
from evesnap_core.model.binary import config_from_binary
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.unknown_fields import ConfigWarning, app_warnings, config_warnings
from evesnap_core.model.validation import parse_model


@dataclass
class LoadedConfig:
    device: DeviceConfig
    warnings: list[ConfigWarning] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per warning, path first."""
        return [str(w) for w in self.warnings]

    def per_app(self) -> dict[UUID, list[str]]:
        return app_warnings(self.warnings)


def load_device_config(data: Any, strict: bool = False, binary: bool = False) -> LoadedConfig:
    """Parse `data` (JSON text, bytes, or a decoded dict; with `binary`, the
    bytes of a binary EdgeDevConfig) as a DeviceConfig.

    Raises ConfigError when it is invalid, and under `strict` at its first
    unknown field (unknown enum numbers stay warnings: proto3 accepts them; a
    binary config's fields without a definition are kept, not refused).
    """
    if binary:
        data = config_from_binary(bytes(data))
    device = parse_model(DeviceConfig, data)
    warnings = config_warnings(device)
    if strict:
        for w in warnings:
            if w.unknown_field:
                raise ConfigError(w.path, f"{w.message} (--strict refuses unknown fields)")
    return LoadedConfig(device, warnings)

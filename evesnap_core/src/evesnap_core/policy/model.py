"""The local policy file: schedules, retention, hooks and a free-space floor per app.

Why a model of its own: the file is written by hand on a device, so every
mistake must be refused before anything runs, with the file and the field path
named (``policy.toml: apps.shop.retention.hourly: ...``). The file is TOML or
JSON; a ``[default]`` section applies to every app, an ``[apps.<name or
UUID>]`` section overrides it field by field (a field set in the app's section
replaces the default's whole value; ``enabled = false`` leaves an app alone).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from evesnap_core.errors import ConfigError
from evesnap_core.model.validation import parse_model
from evesnap_core.policy.cron import CronError, parse_cron

TIERS = ("hourly", "daily", "weekly", "monthly", "yearly")
"""Retention's calendar tiers, shortest first (buckets: hour, day, ISO week, month, year)."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|[KMGTP]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def _check_cron(text: str) -> str:
    try:
        parse_cron(text)
    except CronError as exc:
        raise ValueError(str(exc)) from None
    return text


CronText = Annotated[str, AfterValidator(_check_cron)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retention(Strict):
    """How many schedule snapshots to keep: the newest of each of the N most recent
    periods (that hold a snapshot) per tier, plus the `latest` N; kept by any rule = kept."""

    latest: int = Field(0, ge=0, le=100_000)
    hourly: int = Field(0, ge=0, le=100_000)
    daily: int = Field(0, ge=0, le=100_000)
    weekly: int = Field(0, ge=0, le=100_000)
    monthly: int = Field(0, ge=0, le=100_000)
    yearly: int = Field(0, ge=0, le=100_000)

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if not any(self.rules()):
            raise ValueError("keeps nothing (every count is 0); leave retention out to keep every snapshot")
        return self

    def rules(self) -> list[tuple[str, int]]:
        """The rules in force, as (name, count): latest first, then the tiers shortest first."""
        return [(name, getattr(self, name)) for name in ("latest", *TIERS) if getattr(self, name) > 0]

    def describe(self) -> str:
        return ", ".join(f"{name}={count}" for name, count in self.rules())


class Hooks(Strict):
    """Programs run around each scheduled snapshot: argument lists, never a shell."""

    pre: list[str] | None = Field(None, min_length=1)
    """Runs before; a non-zero exit (or a timeout) vetoes the snapshot."""
    post: list[str] | None = Field(None, min_length=1)
    """Runs after every attempted snapshot, taken or failed (EVESNAP_SNAPSHOT_RESULT says which)."""
    timeout: float = Field(60.0, gt=0, le=3600)
    """Seconds each hook may run before it is killed (a killed pre-hook vetoes)."""

    @field_validator("pre", "post")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value[0].strip():
            raise ValueError("the program (first item) is empty")
        return value


class MinFree(Strict):
    """A free-space floor on the persist filesystem: bytes, or a percent of its size."""

    text: str
    bytes: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, value: object) -> MinFree:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("must be a number of bytes or a string like '2G' or '10%'")
        match = _SIZE.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a size (e.g. 1073741824, '512M', '2GiB', '10%')")
        number, unit = float(match.group(1)), (match.group(2) or "").upper()
        if unit == "%":
            if number > 100:
                raise ValueError(f"{value!r}: a percentage is at most 100")
            return cls(text=str(value), percent=number)
        return cls(text=str(value), bytes=int(number * _UNITS[unit[:1]]))

    def floor_bytes(self, total_bytes: int) -> int:
        if self.percent is not None:
            return int(total_bytes * self.percent / 100)
        return self.bytes or 0


def _min_free(value: object) -> object:
    return value if value is None or isinstance(value, MinFree) else MinFree.parse(value)


class Section(Strict):
    """One app's settings (or the default's); None = not set here."""

    enabled: bool | None = None
    schedules: dict[str, CronText] | None = None
    """Schedule name -> cron expression; any schedule firing takes one snapshot."""
    retention: Retention | None = None
    """Left out: schedule snapshots are never pruned."""
    hooks: Hooks | None = None
    min_free: Annotated[MinFree | None, Field(None)] = None

    @field_validator("min_free", mode="before")
    @classmethod
    def _parse_min_free(cls, value: object) -> object:
        return _min_free(value)

    @field_validator("schedules")
    @classmethod
    def _names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"schedule name {name!r}: use letters, digits, '_', '.', '-'")
        return value


class Effective(BaseModel):
    """An app's settings after merging its section over the default."""

    model_config = ConfigDict(frozen=True)

    section: str
    """Where they come from: 'default', or 'apps.<key>' (merged over the default)."""
    enabled: bool
    schedules: dict[str, str]
    retention: Retention | None
    hooks: Hooks
    min_free: MinFree | None


class Policy(Strict):
    """The whole file."""

    timezone: str = "UTC"
    """IANA zone for cron times and retention periods (days, weeks start Monday, ...)."""
    default: Section = Field(default_factory=Section)
    apps: dict[str, Section] = Field(default_factory=dict)
    """By app UUID or display name."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as 'UTC' or 'Europe/Paris')"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def effective(self, key: str | None) -> Effective:
        """The settings for the app section `key` (None: the default alone)."""
        base = self.default
        own = self.apps[key] if key is not None else Section()

        def pick(name: str) -> Any:
            return getattr(own, name) if name in own.model_fields_set else getattr(base, name)

        enabled = pick("enabled")
        return Effective(
            section="default" if key is None else f"apps.{key}",
            enabled=True if enabled is None else bool(enabled),
            schedules=dict(pick("schedules") or {}),
            retention=pick("retention"),
            hooks=pick("hooks") or Hooks(),
            min_free=pick("min_free"),
        )


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file (TOML, or JSON when it ends in .json or starts
    with '{'); raise ConfigError naming the file and the field path."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    return parse_policy(raw, str(path), as_json=path.suffix.lower() == ".json")


def parse_policy(raw: bytes, name: str = "policy", as_json: bool | None = None) -> Policy:
    text = raw.decode("utf-8", errors="replace")
    if as_json or (as_json is None and text.lstrip().startswith("{")):
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise ConfigError(name, f"not valid JSON: {exc}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(name, f"not valid TOML: {exc}") from None
    try:
        return parse_model(Policy, data)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc.path}" if exc.path else name, exc.reason) from None

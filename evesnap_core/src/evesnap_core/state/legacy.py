"""State that evesnap 0.1 wrote (``<persist>/state/``), read so it can be carried over.

0.1 kept one JSON file per app (snapshots inside), one per volume, the device
config and the journal under ``state/``. The first writable start of a newer
evesnap writes all of it in the current layout and renames the old folder to
``state.migrated-<time>`` (kept, never deleted: nothing is lost if a file of it
could not be read). A read-only look uses it in memory only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from evesnap_core.durable import fsync_dir
from evesnap_core.errors import StateError
from evesnap_core.model.config import DeviceConfig
from evesnap_core.records import AppRecord, VolumeRecord
from evesnap_core.state.stored import read_state_bytes

log = logging.getLogger(__name__)

FOLDER = "state"


@dataclass
class LegacyState:
    apps: dict[UUID, AppRecord] = field(default_factory=dict)
    volumes: dict[str, VolumeRecord] = field(default_factory=dict)
    device: DeviceConfig | None = None
    intents: list[dict[str, Any]] = field(default_factory=list)
    """In the current Intent file's terms (Kind, AppInstanceID, SnapshotID, Details)."""


def read(persist: Path) -> LegacyState | None:
    """The 0.1 state under `persist`, or None when there is none."""
    root = persist / FOLDER
    if not (root / "apps").is_dir():
        return None
    old = LegacyState()
    for path in sorted((root / "apps").glob("*.json")):
        app = _parse(path, AppRecord)
        if app is not None:
            old.apps[app.uuid] = app
    for path in sorted((root / "volumes").glob("*.json")):
        volume = _parse(path, VolumeRecord)
        if volume is not None:
            old.volumes[volume.key] = volume
    device = root / "device.json"
    if device.exists():
        old.device = _parse(device, DeviceConfig)
    for path in sorted((root / "journal").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, StateError, RecursionError):
            body = json.loads(read_state_bytes(path))
            old.intents.append(
                {
                    "Kind": body["kind"],
                    "AppInstanceID": body["app"],
                    "SnapshotID": body["snapshot"],
                    "Details": body.get("details", {}),
                }
            )
    return old


def _parse(path: Path, model: type[Any]) -> Any:
    try:
        return model.model_validate_json(read_state_bytes(path))
    except (OSError, ValidationError, ValueError, StateError, RecursionError) as exc:
        log.warning(
            "evesnap 0.1 state file %s cannot be carried over (%s); it stays in the old folder", path, exc
        )
        return None


def retire(persist: Path) -> Path:
    """Rename the old folder aside once everything in it is written anew."""
    target = persist / f"{FOLDER}.migrated-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    (persist / FOLDER).rename(target)
    fsync_dir(persist)
    log.warning("state of evesnap 0.1 carried over to the current layout; the old files are in %s", target)
    return target

"""A durable OrchestratorStore: one JSON file per app, one per volume, written atomically.

Layout under ``<persist>/state/``: ``apps/<app uuid>.json`` (the app record with
its snapshots), ``volumes/<sha of key>.json``, ``device.json`` (the last
config applied), ``journal/<intent>.json``. Every write goes through
`atomic_write`; a file that does not parse is moved aside and reported, and
never stops the others from loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid as uuidlib
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from pydantic import ValidationError

from evesnap_core.durable import atomic_write, durable_unlink, ensure_dir
from evesnap_core.model.config import DeviceConfig
from evesnap_core.orchestrator.records import AppRecord, SnapshotRecord, VolumeRecord

log = logging.getLogger(__name__)

R = TypeVar("R", AppRecord, VolumeRecord)


class FileStore:
    def __init__(self, persist_dir: Path) -> None:
        self.root = persist_dir / "state"
        self.apps_dir = ensure_dir(self.root / "apps")
        self.volumes_dir = ensure_dir(self.root / "volumes")
        self.journal_dir = ensure_dir(self.root / "journal")
        self.quarantine_dir = self.root / "quarantine"
        self.problems: list[str] = []
        self._apps: dict[UUID, AppRecord] = {}
        """The engine's own records (not copies): a snapshot save rewrites its app's file."""
        self._written: dict[Path, bytes] = {}
        """What each file holds, so that an unchanged record costs no write."""

    # ------------------------------------------------------------ loading

    def load(self) -> tuple[dict[UUID, AppRecord], dict[str, VolumeRecord]]:
        apps: dict[UUID, AppRecord] = {}
        for path in sorted(self.apps_dir.glob("*.json")):
            record = self._read(path, AppRecord)
            if record is not None:
                apps[record.uuid] = record
        volumes: dict[str, VolumeRecord] = {}
        for path in sorted(self.volumes_dir.glob("*.json")):
            volume = self._read(path, VolumeRecord)
            if volume is not None:
                volumes[volume.key] = volume
        self._apps = dict(apps)
        return apps, volumes

    def _read(self, path: Path, model: type[R]) -> R | None:
        try:
            data = path.read_bytes()
            record = model.model_validate_json(data)
            self._written[path] = data
            return record
        except (OSError, ValidationError, ValueError) as exc:
            self._quarantine(path, exc)
            return None

    def _quarantine(self, path: Path, exc: Exception) -> None:
        ensure_dir(self.quarantine_dir)
        target = self.quarantine_dir / f"{path.name}.{uuidlib.uuid4().hex[:8]}"
        with contextlib.suppress(OSError):
            path.rename(target)
        message = f"unreadable state file {path} moved to {target}: {exc}"
        log.error("%s", message)
        self.problems.append(message)

    def load_device(self) -> DeviceConfig | None:
        path = self.root / "device.json"
        try:
            return DeviceConfig.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError) as exc:
            self._quarantine(path, exc)
            return None

    def save_device(self, config: DeviceConfig) -> None:
        self._write(self.root / "device.json", json.dumps(config.to_json_dict()).encode())

    def _write(self, path: Path, data: bytes) -> None:
        if self._written.get(path) == data:
            return
        atomic_write(path, data)
        self._written[path] = data

    def _drop(self, path: Path) -> None:
        self._written.pop(path, None)
        durable_unlink(path)

    # ------------------------------------------------------------ records

    def _app_path(self, app: UUID) -> Path:
        return self.apps_dir / f"{app}.json"

    def save_app(self, record: AppRecord) -> None:
        self._apps[record.uuid] = record
        self._write(self._app_path(record.uuid), record.model_dump_json().encode())

    def remove_app(self, app: UUID) -> None:
        self._apps.pop(app, None)
        self._drop(self._app_path(app))

    def save_snapshot(self, snapshot: SnapshotRecord) -> None:
        record = self._apps.get(snapshot.app)
        if record is None:
            return
        record.snapshots[snapshot.id] = snapshot
        self._write(self._app_path(record.uuid), record.model_dump_json().encode())

    def remove_snapshot(self, app: UUID, snapshot_id: str) -> None:
        record = self._apps.get(app)
        if record is None:
            return
        record.snapshots.pop(snapshot_id, None)
        self._write(self._app_path(app), record.model_dump_json().encode())

    def _volume_path(self, key: str) -> Path:
        return self.volumes_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def save_volume(self, volume: VolumeRecord) -> None:
        self._write(self._volume_path(volume.key), volume.model_dump_json().encode())

    def remove_volume(self, key: str) -> None:
        self._drop(self._volume_path(key))

    # ------------------------------------------------------------ journal

    def begin(self, kind: str, app: UUID, snapshot_id: str, details: dict[str, str]) -> str:
        intent = uuidlib.uuid4().hex
        body = {"kind": kind, "app": str(app), "snapshot": snapshot_id, "details": details}
        atomic_write(self.journal_dir / f"{intent}.json", json.dumps(body).encode())
        return intent

    def commit(self, intent: str) -> None:
        durable_unlink(self.journal_dir / f"{intent}.json")

    def unfinished(self) -> list[dict[str, object]]:
        out = []
        for path in sorted(self.journal_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append({"intent": path.stem, **json.loads(path.read_bytes())})
        return out

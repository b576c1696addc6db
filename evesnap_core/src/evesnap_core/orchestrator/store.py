"""Where the orchestrator's records live between restarts.

`OrchestratorStore` is what the engine needs; `MemoryStore` keeps records in
memory (tests, benchmarks with faked backends); the durable implementation
writes the reference's snapshot folders under the persist folder.
"""

from __future__ import annotations

import itertools
from typing import Protocol
from uuid import UUID

from evesnap_core.model.config import DeviceConfig
from evesnap_core.records import AppRecord, Damaged, SnapshotRecord, VolumeRecord


class OrchestratorStore(Protocol):
    def load(self) -> tuple[dict[UUID, AppRecord], dict[str, VolumeRecord]]:
        """Every app (with its snapshots) and volume recorded, as the last run left them."""
        ...

    def load_device(self) -> DeviceConfig | None:
        """The last config applied, or None on a new device."""
        ...

    def save_device(self, config: DeviceConfig) -> None: ...
    def save_app(self, record: AppRecord) -> None: ...
    def remove_app(self, app: UUID) -> None: ...
    def save_snapshot(self, snapshot: SnapshotRecord) -> None: ...
    def remove_snapshot(self, app: UUID, snapshot_id: str) -> None: ...
    def save_volume(self, volume: VolumeRecord) -> None: ...
    def remove_volume(self, key: str) -> None: ...

    def begin(self, kind: str, app: UUID, snapshot_id: str, details: dict[str, str]) -> str:
        """Record the intent of a multi-step operation before its first step."""
        ...

    def commit(self, intent: str) -> None:
        """The operation finished (done or undone): its intent is resolved."""
        ...

    def unfinished(self) -> list[dict[str, object]]:
        """Intents a crash left: each has ``intent``, ``kind``, ``app``, ``snapshot``."""
        ...

    def damaged(self) -> list[Damaged]:
        """Stored state that could not be read: reported on its app and snapshot."""
        ...


class MemoryStore:
    """Records in memory only: nothing survives the process."""

    def __init__(self) -> None:
        self.apps: dict[UUID, AppRecord] = {}
        self.volumes: dict[str, VolumeRecord] = {}
        self.intents: dict[str, tuple[str, UUID, str]] = {}
        self.details: dict[str, dict[str, str]] = {}
        self.device: DeviceConfig | None = None
        self._ids = itertools.count(1)

    def load(self) -> tuple[dict[UUID, AppRecord], dict[str, VolumeRecord]]:
        return {k: v.model_copy(deep=True) for k, v in self.apps.items()}, dict(self.volumes)

    def load_device(self) -> DeviceConfig | None:
        return self.device

    def save_device(self, config: DeviceConfig) -> None:
        self.device = config

    def save_app(self, record: AppRecord) -> None:
        self.apps[record.uuid] = record.model_copy(deep=True)

    def remove_app(self, app: UUID) -> None:
        self.apps.pop(app, None)

    def save_snapshot(self, snapshot: SnapshotRecord) -> None:
        app = self.apps.get(snapshot.app)
        if app is not None:
            app.snapshots[snapshot.id] = snapshot.model_copy(deep=True)

    def remove_snapshot(self, app: UUID, snapshot_id: str) -> None:
        record = self.apps.get(app)
        if record is not None:
            record.snapshots.pop(snapshot_id, None)

    def save_volume(self, volume: VolumeRecord) -> None:
        self.volumes[volume.key] = volume.model_copy(deep=True)

    def remove_volume(self, key: str) -> None:
        self.volumes.pop(key, None)

    def begin(self, kind: str, app: UUID, snapshot_id: str, details: dict[str, str]) -> str:
        intent = str(next(self._ids))
        self.intents[intent] = (kind, app, snapshot_id)
        self.details[intent] = dict(details)
        return intent

    def commit(self, intent: str) -> None:
        self.intents.pop(intent, None)
        self.details.pop(intent, None)

    def unfinished(self) -> list[dict[str, object]]:
        return [
            {
                "intent": k,
                "kind": v[0],
                "app": str(v[1]),
                "snapshot": v[2],
                "details": self.details.get(k, {}),
            }
            for k, v in self.intents.items()
        ]

    def damaged(self) -> list[Damaged]:
        return []

"""The ledger: every app, volume and snapshot the orchestrator knows, and its journal.

The bottom of the orchestrator's flow. It holds the records in memory
(`evesnap_core.records`), writes each change through to the state store
(`OrchestratorStore`: `MemoryStore`, or the persist folder), and opens the
journal's intents. Every other part of the orchestrator reads and writes state
through it, never through the store.

An intent brackets a multi-step operation (a snapshot, a deletion, a rollback, a
clone) as a ``with`` block::

    with ledger.intent("snapshot", app, snapshot_id) as intent:
        intent.on_error(undo)     # what undoes the steps taken so far
        ...                       # the steps
        intent.keep()             # the steps are done; what follows records them

On leaving the block normally the intent is committed. On an `EvesnapError`
before `keep`, the registered undos run (last first) and the intent is committed
(the operation is undone, nothing is left to recover), and the error goes on;
an undo that raises leaves the intent uncommitted. On anything else (a crash
point, a bug, a kill) and on any error after `keep`, the intent stays in the
journal: recovery at the next start resolves it from the records, exactly as
after a power cut.

The agent runs different apps' requests side by side (`api.lanes`): every write
and every intent goes through the ledger's `guard`, so the store and the
dictionaries change one step at a time; a read over all apps (`reports`) holds
it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from uuid import UUID

from evesnap_core.errors import EvesnapError, UnknownTarget
from evesnap_core.handler_types import VolumeHandle
from evesnap_core.model.config import AppInstanceConfig, DeviceConfig
from evesnap_core.orchestrator.store import OrchestratorStore
from evesnap_core.records import AppRecord, SnapshotRecord, VolumeRecord


def volume_keys(config: AppInstanceConfig) -> list[str]:
    """The volume generations an app config uses, in its order (first = boot disk)."""
    return [f"{ref.uuid}#{ref.generation_count}" for ref in config.volume_ref_list]


class Intent:
    """One open intent of the journal (see the module docstring)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.kept = False
        self.left = False
        self._undo: list[Callable[[EvesnapError], None]] = []

    def on_error(self, undo: Callable[[EvesnapError], None]) -> None:
        """Run `undo` (given the error) if the operation fails before `keep`."""
        self._undo.append(undo)

    def keep(self) -> None:
        """The steps are done: from here a failure leaves the intent to recovery."""
        self.kept = True

    def leave_to_recovery(self) -> None:
        """Whatever happens, leave the intent in the journal: what it guards is not
        settled yet (a guest not thawed), and recovery at the next start settles it."""
        self.left = True

    def undo(self, error: EvesnapError) -> None:
        """Run the undos, last first; one that raises leaves the intent to recovery."""
        for step in reversed(self._undo):
            step(error)


class Ledger:
    """The records in memory, written through to the store; the journal's intents."""

    def __init__(self, store: OrchestratorStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self.guard = threading.RLock()
        """Held by every write, and by reads over every app, while apps' requests run side by side."""
        self.apps: dict[UUID, AppRecord]
        self.volumes: dict[str, VolumeRecord]
        self.apps, self.volumes = store.load()
        self._device: DeviceConfig | None = None
        self.damaged = store.damaged()
        """Stored state that could not be read, reported on its app (and snapshot)."""

    @property
    def device(self) -> DeviceConfig:
        """The device config last applied, read from the store when first needed: a
        restart's records and reports do not need it, and the next reconcile replaces
        it (at 1,000 apps its validation is ~0.1 s of a restart otherwise)."""
        if self._device is None:
            self._device = self.store.load_device() or DeviceConfig()
        return self._device

    # ------------------------------------------------------------ the journal

    @contextmanager
    def intent(
        self, kind: str, app: UUID, snapshot_id: str, details: Mapping[str, str] | None = None
    ) -> Iterator[Intent]:
        """Journal a multi-step operation for the length of the block."""
        with self.guard:
            opened = Intent(self.store.begin(kind, app, snapshot_id, dict(details or {})))
        try:
            yield opened
        except EvesnapError as exc:
            if not opened.kept:
                opened.undo(exc)
                if not opened.left:
                    with self.guard:
                        self.store.commit(opened.token)
            raise
        if not opened.left:
            with self.guard:
                self.store.commit(opened.token)

    def unfinished(self) -> list[dict[str, object]]:
        """The intents a crash left (recovery's input)."""
        return self.store.unfinished()

    def resolve(self, token: str) -> None:
        """Recovery has resolved a crash's intent."""
        with self.guard:
            self.store.commit(token)

    # ------------------------------------------------------------ writes

    def save_device(self, device: DeviceConfig) -> None:
        with self.guard:
            self._device = device
            self.store.save_device(device)

    def add_app(self, record: AppRecord) -> None:
        with self.guard:
            self.apps[record.uuid] = record
            self.store.save_app(record)

    def save_app(self, record: AppRecord) -> None:
        with self.guard:
            self.store.save_app(record)

    def remove_app(self, record: AppRecord) -> None:
        with self.guard:
            del self.apps[record.uuid]
            self.store.remove_app(record.uuid)

    def add_snapshot(self, record: AppRecord, snap: SnapshotRecord) -> None:
        with self.guard:
            record.snapshots[snap.id] = snap
            self.store.save_snapshot(snap)

    def save_snapshot(self, snap: SnapshotRecord) -> None:
        with self.guard:
            self.store.save_snapshot(snap)

    def forget_snapshot(self, record: AppRecord, snapshot_id: str) -> None:
        with self.guard:
            record.snapshots.pop(snapshot_id, None)
            self.store.remove_snapshot(record.uuid, snapshot_id)

    def save_volume(self, volume: VolumeRecord, key: str | None = None) -> None:
        """Record `volume`, in memory under `key` (its own key unless given)."""
        with self.guard:
            self.volumes[key or volume.key] = volume
            self.store.save_volume(volume)

    def drop_volume(self, key: str) -> None:
        with self.guard:
            self.volumes.pop(key, None)
            self.store.remove_volume(key)

    # ------------------------------------------------------------ reads

    def app(self, app: UUID) -> AppRecord:
        """An app the controller configured or a clone, else UnknownTarget."""
        record = self.apps.get(app)
        if record is None or record.config is None:
            raise UnknownTarget(f"no app {app}")
        return record

    @staticmethod
    def snapshot(record: AppRecord, snapshot_id: str, available: bool = False) -> SnapshotRecord:
        """A snapshot of `record` (an available one if asked), else UnknownTarget."""
        snap = record.snapshots.get(snapshot_id)
        if snap is None or (available and snap.state != "available"):
            what = "no available snapshot" if available else "no snapshot"
            raise UnknownTarget(f"{what} {snapshot_id} of app {record.name or record.uuid}")
        return snap

    def handle(self, key: str) -> VolumeHandle:
        """The backend's handle of the volume generation `key`."""
        volume = self.volumes.get(key)
        if volume is None or volume.handle is None:
            raise EvesnapError(f"volume {key} does not exist")
        return volume.handle

    def app_volumes(self, record: AppRecord) -> list[VolumeRecord]:
        """The volumes the app runs with (or will), in its order."""
        config = record.deployed or record.config
        keys = volume_keys(config) if config else []
        return [self.volumes[k] for k in keys if k in self.volumes]

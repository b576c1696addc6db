"""The orchestrator's façade: the wiring, `reconcile`, and the operator's commands.

One snapshot request flows down through the parts this façade wires together
(see docs/architecture.md for the whole picture):

- `reconcile` (here) takes the controller's `DeviceConfig`; for each volume it
  asks `volumes`, for each app `converge` (a failure in one app is reported on
  that app and never stops the others), then releases unused volumes;
- `converge` plans the app's snapshot section (`snapshot_plan`) and decides what
  happens now; `transactions` carries out each snapshot step on the backends
  (take, delete, rollback, clone, open), journalled in the `ledger`, which keeps
  every record and writes it to the state store;
- `recovery` resolves what a crash left, once at start; `reports` reads the
  ledger back out as the controller's ZInfo messages.

The operator's commands (``evesnap snapshot ...``, the policy's scheduled
snapshots) enter here too and go down the same path.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from evesnap_core.discovery import Registry
from evesnap_core.errors import ConfigError, EvesnapError
from evesnap_core.handler_types import ProgressCallback, ReadOnlyExport
from evesnap_core.model.config import DeviceConfig, SnapshotDesc, SnapshotType
from evesnap_core.model.info import ZInfoApp, ZInfoVolume
from evesnap_core.orchestrator import reports as reading
from evesnap_core.orchestrator.content import ContentResolver
from evesnap_core.orchestrator.converge import Converger
from evesnap_core.orchestrator.guard import Guard
from evesnap_core.orchestrator.ledger import Ledger
from evesnap_core.orchestrator.recovery import recover
from evesnap_core.orchestrator.reports import Reports
from evesnap_core.orchestrator.store import MemoryStore, OrchestratorStore
from evesnap_core.orchestrator.transactions import SnapshotTransactions
from evesnap_core.orchestrator.transactions import display_name as checked_name
from evesnap_core.orchestrator.tree import DeleteOutcome, DeleteScope, delete_targets
from evesnap_core.orchestrator.volumes import Volumes
from evesnap_core.orchestrator.wiring import Wiring
from evesnap_core.records import AppRecord, SnapshotOrigin, VolumeRecord, utcnow
from evesnap_core.runtimes.runtime import Runtime

log = logging.getLogger(__name__)


class Orchestrator:
    """Reconciles to a DeviceConfig; takes the operator's commands; produces the reports."""

    def __init__(
        self,
        registry: Registry,
        runtime: Runtime,
        resolver: ContentResolver | None = None,
        store: OrchestratorStore | None = None,
        clock: Callable[[], datetime] = utcnow,
        stop_timeout: float = 30.0,
        progress: ProgressCallback | None = None,
        recover: bool = True,
    ) -> None:
        self.ledger = Ledger(store or MemoryStore(), clock)
        self.wiring = Wiring(
            ledger=self.ledger,
            registry=registry,
            runtime=runtime,
            resolver=resolver or ContentResolver(),
            stop_timeout=stop_timeout,
            progress=progress,
            persist=getattr(store, "persist", None),  # the durable store's folder
        )
        self.registry = registry
        self.store = self.ledger.store
        self.apps = self.ledger.apps  # the ledger's own dictionaries (never replaced)
        self.volumes = self.ledger.volumes
        self.damaged = self.ledger.damaged
        """Stored state that could not be read, reported on its app (and snapshot)."""
        self.problems: list[str] = []
        """What the last reconcile could not write (a full disk), one line each: the
        apps' own failures are on the apps; this says the state is behind."""
        self.volume_keeper = Volumes(self.wiring)
        self.transactions = SnapshotTransactions(self.wiring, self.volume_keeper)
        self.converger = Converger(self.wiring, self.volume_keeper, self.transactions)
        if recover:  # a read-only look (evesnap status beside a running agent) changes nothing
            self.recover()

    # ------------------------------------------------------------ the wiring, shared by every part

    @property
    def runtime(self) -> Runtime:
        return self.wiring.runtime

    @runtime.setter
    def runtime(self, runtime: Runtime) -> None:
        self.wiring.runtime = runtime

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ledger.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.ledger.clock = clock

    @property
    def device(self) -> DeviceConfig:
        """The config last applied."""
        return self.ledger.device

    def recover(self) -> list[str]:
        """Resolve what a crash left half done; say what was done."""
        return recover(self.wiring, self.volume_keeper, self.transactions)

    # ------------------------------------------------------------ reconcile

    def reconcile(self, device: DeviceConfig, warnings: Mapping[UUID, list[str]] | None = None) -> Reports:
        """Bring the device to `device`; return the reports.

        `warnings` are lines about each app's part of the config (unknown
        fields, unknown enum numbers: model.unknown_fields), reported on the app.
        Nothing here raises for one app or one write (`guard.Guard`): a failure
        is reported on the app (or volume) it hit, a state write that fails (a
        full disk) is one line in `problems`; every other app is reconciled."""
        guard = Guard(self.ledger)
        guard.device("cannot record the device config", partial(self.ledger.save_device, device))
        for volume in device.volumes:
            guard.volume(volume.uuid, partial(self.volume_keeper.ensure_config_volume, volume))
        wanted = {app.uuid for app in device.apps}
        for app in device.apps:
            record = self.apps.get(app.uuid) or AppRecord(uuid=app.uuid)
            self.apps[app.uuid] = record
            notes = list((warnings or {}).get(app.uuid, ()))
            guard.app(record, partial(self.converger.apply, record, app, notes))
        for gone in [u for u, r in self.apps.items() if u not in wanted and r.origin != "clone"]:
            record = self.apps[gone]
            guard.app(record, partial(self.converger.remove_app, record))
        guard.device("cannot release unused volumes", self.volume_keeper.release_unused)
        self.problems = guard.problems
        return self.reports()

    # ------------------------------------------------------------ the operator's commands

    def snapshot_now(
        self,
        app: UUID,
        snapshot_id: str | None = None,
        origin: SnapshotOrigin = "local",
        display_name: str = "",
    ) -> str:
        """Take an immediate snapshot outside the controller's list (a device-made id)."""
        if display_name:
            checked_name(display_name)  # before anything is recorded
        record = self.ledger.app(app)
        desc = SnapshotDesc(
            id=UUID(snapshot_id) if snapshot_id else uuidlib.uuid4(),
            type=SnapshotType.SNAPSHOT_TYPE_IMMEDIATE,
        )
        if str(desc.id) in record.snapshots:
            return str(desc.id)
        snap = self.transactions.add_request(record, desc, origin)
        if display_name:
            snap.display_name = checked_name(display_name)
            self.ledger.save_snapshot(snap)
        self.converger.converge(record)
        if snap.state != "available":
            raise EvesnapError(snap.error.description if snap.error else f"snapshot {snap.id} was not taken")
        return snap.id

    def rollback_now(self, app: UUID, snapshot_id: str, destroy_newer: bool = False) -> list[str]:
        """Roll back at once; newer snapshots stay where every backend can keep them.

        Returns the snapshots destroyed on the way, which happens only with
        `destroy_newer` on a backend that rolls back only to its newest (ZFS).
        """
        record = self.ledger.app(app)
        self.ledger.snapshot(record, snapshot_id)
        record.rollback_target = snapshot_id
        record.rollback_destroy_newer = destroy_newer
        self.ledger.save_app(record)
        destroyed = self.transactions.rollback(record, snapshot_id)
        self.converger.converge(record)
        return destroyed

    def delete_now(
        self, app: UUID, snapshot_id: str, scope: DeleteScope = "snapshot", force: bool = False
    ) -> DeleteOutcome:
        """Delete a snapshot, its descendants, both, or only evesnap's record of it.

        A snapshot the controller lists is refused without `force`: the
        controller deletes it by leaving it out of its list.
        """
        record = self.ledger.app(app)
        snap = self.ledger.snapshot(record, snapshot_id)
        targets = delete_targets(record, snap, scope)
        listed = record.config.snapshot.snapshots if record.config and record.config.snapshot else []
        held = [t.id for t in targets if t.id in {str(d.id) for d in listed}]
        if held and not force:
            raise ConfigError(
                "SNAPSHOT_ID",
                f"snapshot {', '.join(held)} is in the controller's list: the controller deletes it by "
                "leaving it out (or use --force, and the controller's next config takes it again)",
            )
        outcome = DeleteOutcome()
        if scope == "metadata-only":
            outcome.forgotten[snap.id] = [f"{key}: {part.info.name}" for key, part in snap.volumes.items()]
            self.transactions.close_exports(snap)
            self.transactions.detach_from_tree(record, snap)
            self.ledger.forget_snapshot(record, snap.id)
            self.ledger.save_app(record)
            return outcome
        for target in targets:
            target.state = "deleting"
            self.ledger.save_snapshot(target)
        self.converger.converge(record)
        for target in targets:
            now = record.snapshots.get(target.id)
            if now is None:
                outcome.deleted.append(target.id)
            elif now.error is not None:
                outcome.failed[target.id] = now.error.description
            else:
                outcome.pending.append(target.id)
        return outcome

    def rename_snapshot(self, app: UUID, snapshot_id: str, name: str) -> None:
        """A display name for people; the id, which the controller knows, stays."""
        checked_name(name)
        snap = self.ledger.snapshot(self.ledger.app(app), snapshot_id)
        snap.display_name = name
        self.ledger.save_snapshot(snap)

    def describe_snapshot(self, app: UUID, snapshot_id: str) -> dict[str, Any]:
        """The snapshot's record, its place in the tree, and what each backend sees of it."""
        record = self.ledger.app(app)
        return reading.describe_snapshot(self.wiring, record, self.ledger.snapshot(record, snapshot_id))

    def open_snapshot(self, app: UUID, snapshot_id: str) -> dict[str, ReadOnlyExport]:
        """Expose every volume of a snapshot read-only, all or none; open until closed."""
        record = self.ledger.app(app)
        return self.transactions.open(record, self.ledger.snapshot(record, snapshot_id, available=True))

    def close_snapshot(self, app: UUID, snapshot_id: str) -> None:
        snap = self.ledger.snapshot(self.ledger.app(app), snapshot_id)
        self.transactions.close_exports(snap, strict=True)

    def clone_app(self, app: UUID, snapshot_id: str, name: str, start: bool = True) -> UUID:
        """A new app from a snapshot: its config under a new UUID, a clone of each
        volume. All or nothing; the device's own (origin clone)."""
        checked_name(name)  # before a volume is copied
        record = self.ledger.app(app)
        clone = self.transactions.clone_app(
            record, self.ledger.snapshot(record, snapshot_id, available=True), name, start
        )
        self.converger.converge(clone)
        return clone.uuid

    def clone_volumes(self, app: UUID, snapshot_id: str) -> list[VolumeRecord]:
        """New volumes from a snapshot, for other uses; removed with remove_clone."""
        record = self.ledger.app(app)
        return self.transactions.clone_volumes(
            record, self.ledger.snapshot(record, snapshot_id, available=True)
        )

    def remove_clone(self, target: UUID) -> str:
        """Remove a cloned app (stopped, its snapshots and volumes deleted) or a cloned volume."""
        return self.converger.remove_clone(target)

    # ------------------------------------------------------------ reads

    def app_volumes(self, record: AppRecord) -> list[VolumeRecord]:
        return self.ledger.app_volumes(record)

    def reports(self, for_controller: bool = False) -> Reports:
        """Apps and volumes; the controller's view leaves out clones, which are the device's own."""
        return reading.reports(self.wiring, for_controller)

    def app_report(self, record: AppRecord) -> ZInfoApp:
        return reading.app_report(self.wiring, record)

    @staticmethod
    def volume_report(volume: VolumeRecord) -> ZInfoVolume:
        return reading.volume_report(volume)

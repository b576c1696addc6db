"""Converging one app: from its controller config (or a rollback) to a running app.

The middle of the orchestrator's flow, one app at a time. `apply` takes the
app's config and the snapshot plan (`snapshot_plan`): new requests, deletions,
cancellations, ``max_snapshots``, the rollback counter. `converge` then decides
what happens now and in which order, and asks `transactions` for every snapshot
step and `volumes` for every volume:

1. a rollback, when one fired: stop, roll every volume back, restore the
   snapshot's config (with the reference's fixups);
2. volumes: create every generation the target config names;
3. an update (new version, new volume generations, purge counter): stop the
   app, carry out pending deletions first, take the requested app-update
   snapshots of the PRE-update volumes (a replaced generation is retired into
   its snapshot, not copied), switch to the new volumes, start;
4. immediate snapshots: live and without any downtime when every volume's
   backend can (QMP), otherwise stop, snapshot, start;
5. deletions wait for the next stop, unless the app is stopped or every backend
   deletes live; a failed deletion is recorded on its snapshot and retried.

Its own crash points (``converge.*``) mark the app stopped and the new config
deployed.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from evesnap_core.crashpoints import crashpoint
from evesnap_core.errors import EvesnapError, UnknownTarget
from evesnap_core.handler_types import Capability
from evesnap_core.model.config import AppInstanceConfig, SnapshotType
from evesnap_core.orchestrator.boundaries import check_volumes
from evesnap_core.orchestrator.ledger import volume_keys
from evesnap_core.orchestrator.snapshot_plan import KnownSnapshot, plan_snapshots
from evesnap_core.orchestrator.transactions import SnapshotTransactions, fixup_restored_config
from evesnap_core.orchestrator.volumes import Volumes
from evesnap_core.orchestrator.wiring import Wiring
from evesnap_core.records import AppRecord, Problem, SnapshotRecord
from evesnap_core.runtime_hookspecs import AppSpec


def _counter(cmd: object) -> int:
    return int(getattr(cmd, "counter", 0) or 0)


class Converger:
    def __init__(self, wiring: Wiring, volumes: Volumes, transactions: SnapshotTransactions) -> None:
        self.w = wiring
        self.volumes = volumes
        self.txn = transactions

    def apply(self, record: AppRecord, config: AppInstanceConfig, warnings: Sequence[str] = ()) -> None:
        """Take the controller's config of the app and its snapshot plan; converge.

        `warnings` (about the config itself) are reported on the app.
        """
        ledger = self.w.ledger
        record.config = config
        record.name = config.displayname
        record.problems = [Problem(description=w, severity="warning", time=self.w.now()) for w in warnings]
        plan = plan_snapshots(
            self._known(record), config.snapshot, record.last_rollback_counter, record.evicted
        )
        if plan.rollback_counter is not None:
            record.last_rollback_counter = plan.rollback_counter
        if plan.error:
            record.problems.append(Problem(description=plan.error, time=self.w.now()))
            ledger.save_app(record)
            return
        record.evicted = plan.evicted
        record.problems.extend(
            Problem(description=w, severity="warning", time=self.w.now()) for w in plan.warnings
        )
        for sid in plan.cancel:
            ledger.forget_snapshot(record, sid)
        for sid in plan.delete:
            record.snapshots[sid].state = "deleting"
            ledger.save_snapshot(record.snapshots[sid])
        for desc in plan.new_requests:
            mine = record.snapshots.get(str(desc.id))
            if mine is not None:  # an id the device already has: the controller adopts it
                mine.origin = "controller"
                ledger.save_snapshot(mine)
            else:
                self.txn.add_request(record, desc, "controller")
        if plan.rollback_to:
            record.rollback_target = plan.rollback_to
        ledger.save_app(record)
        self.converge(record)

    def converge(self, record: AppRecord) -> None:
        """Carry out what the app's records ask for now (see the module docstring)."""
        runtime, txn = self.w.runtime, self.txn
        if record.rollback_target:
            txn.rollback(record, record.rollback_target)
        target = self._target_config(record)
        self.volumes.ensure_app_volumes(target)
        state = runtime.state(record.uuid)
        if state == "crashed":  # its VM died without being asked to stop: say so, then start it again
            record.problems.append(
                Problem(
                    description=f"app {record.name or record.uuid} died (its VM exited unasked); restarted",
                    time=self.w.now(),
                )
            )
            runtime.stop(record.uuid, self.w.stop_timeout)  # forget the dead VM
        running = state == "running"
        update = record.deployed is not None and self._is_update(record.deployed, target)
        immediate = [s for s in self._requested(record) if s.type == SnapshotType.SNAPSHOT_TYPE_IMMEDIATE]
        if immediate and running and not update and self.volumes.all_live(record, Capability.LIVE_SNAPSHOT):
            attachments = runtime.attachments(record.uuid)
            for snap in immediate:
                txn.take(record, snap, attachments=attachments)
            immediate = []
        deleting = [s for s in record.snapshots.values() if s.state == "deleting"]
        if deleting and running and self.volumes.all_live(record, Capability.LIVE_DELETE):
            attachments = runtime.attachments(record.uuid)
            for snap in deleting:
                txn.delete(record, snap, attachments=attachments)
            deleting = []
        first_deploy = record.deployed is None
        restart = record.deployed is not None and _counter(target.restart) > _counter(record.deployed.restart)
        if running and (update or immediate or restart or not target.activate):
            txn.stop_app(record)
            running = False
            crashpoint("converge.app_stopped")
        if not running:
            for snap in deleting:
                txn.delete(record, snap)  # deletions before creations
            if update and record.deployed is not None:
                retiring = set(volume_keys(record.deployed)) - set(volume_keys(target))
                for snap in self._requested(record):
                    if snap.type != SnapshotType.SNAPSHOT_TYPE_IMMEDIATE:
                        txn.take(record, snap, retiring=retiring)
            for snap in immediate:
                txn.take(record, snap)
            if update or first_deploy or restart or record.deployed != target:
                record.deployed = target
            self.w.ledger.save_app(record)
            crashpoint("converge.deployed")
        if target.activate and not running:
            spec = self._app_spec(record, target)
            check_volumes(record.name or str(record.uuid), spec.volumes, self.w.persist)
            runtime.start(spec)
        self.w.ledger.save_app(record)

    def remove_app(self, record: AppRecord) -> None:
        """An app the config no longer names (or a removed clone): stop it, delete
        its snapshots, forget it; a failed deletion keeps it, to retry and report."""
        if self.w.runtime.state(record.uuid) == "running":
            self.txn.stop_app(record)
        for snap in list(record.snapshots.values()):
            if snap.state == "requested":
                self.w.ledger.forget_snapshot(record, snap.id)
            else:
                self.txn.delete(record, snap)
        if any(s.state != "requested" for s in record.snapshots.values()):
            return
        self.w.ledger.remove_app(record)

    def remove_clone(self, target: UUID) -> str:
        """Remove a cloned app (stopped, its snapshots and volumes deleted) or a cloned volume."""
        record = self.w.ledger.apps.get(target)
        if record is not None:
            if record.origin != "clone":
                raise EvesnapError(f"app {target} is the controller's: it goes when its config leaves it out")
            volumes = self.w.ledger.app_volumes(record)
            self.remove_app(record)
            if target in self.w.ledger.apps:
                raise EvesnapError(f"a snapshot of clone {target} could not be deleted (see evesnap status)")
            for owned in volumes:
                self.volumes.destroy(owned)
            return f"app {target} ({record.name}) and its {len(volumes)} volume(s)"
        volume = next((v for v in self.w.ledger.volumes.values() if v.spec.uuid == target), None)
        if volume is None or volume.origin != "clone":
            raise UnknownTarget(f"no clone {target} (clones are listed by 'evesnap status')")
        users = [str(a.uuid) for a in self.w.ledger.apps.values() if volume in self.w.ledger.app_volumes(a)]
        if users:
            raise EvesnapError(f"volume {target} belongs to app {', '.join(users)}: remove that clone")
        self.volumes.destroy(volume)
        return f"volume {target}"

    # ------------------------------------------------------------ reads

    @staticmethod
    def _target_config(record: AppRecord) -> AppInstanceConfig:
        """The controller's config, unless a rollback's restored config still has priority."""
        assert record.config is not None
        if record.restored is not None:
            if record.config.version == record.rolled_back_from:
                return fixup_restored_config(record.restored, record.config)
            record.restored = None
            record.rolled_back_from = None
        return record.config

    @staticmethod
    def _is_update(deployed: AppInstanceConfig, target: AppInstanceConfig) -> bool:
        return (
            deployed.version != target.version
            or volume_keys(deployed) != volume_keys(target)
            or _counter(target.purge) > _counter(deployed.purge)
        )

    def _app_spec(self, record: AppRecord, config: AppInstanceConfig) -> AppSpec:
        handles = []
        for key in volume_keys(config):
            volume = self.w.ledger.volumes.get(key)
            if volume is None or volume.handle is None:
                raise EvesnapError(f"volume {key} of app {record.uuid} is not ready")
            handles.append(volume.handle)
        return AppSpec(
            uuid=record.uuid, name=config.displayname, version=config.version, volumes=tuple(handles)
        )

    @staticmethod
    def _known(record: AppRecord) -> list[KnownSnapshot]:
        return [
            KnownSnapshot(
                id=s.id,
                type=s.type,
                state="available" if s.state == "available" else "requested",
                created=s.created or s.requested,
            )
            for s in record.snapshots.values()
            # the controller's list rules (deletion by omission, max_snapshots) govern the
            # controller's snapshots only: local and scheduled ones follow the local policy
            if s.state != "deleting" and s.origin == "controller"
        ]

    @staticmethod
    def _requested(record: AppRecord) -> list[SnapshotRecord]:
        return sorted(
            (s for s in record.snapshots.values() if s.state == "requested"), key=lambda s: s.requested
        )

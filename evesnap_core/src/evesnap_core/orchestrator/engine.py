"""The orchestrator: reconcile apps, volumes and snapshots to the controller config.

One call of `Orchestrator.reconcile` does, app by app (a failure in one app is
reported on that app and never stops the others):

1. plan the snapshot section (`snapshot_plan`): new requests, deletions,
   cancellations, ``max_snapshots``, the rollback counter;
2. a rollback, when one fired: stop the app, roll every volume back, restore
   the snapshot's config (with the reference's fixups), start it again;
3. volumes: create every generation the config names, from content or blank;
4. an update (new version, new volume generations, purge counter): stop the
   app, carry out pending deletions first, take the requested app-update
   snapshots of the PRE-update volumes (a replaced generation is retired into
   its snapshot, not copied), switch to the new volumes, start;
5. immediate snapshots: live and without any downtime when every volume's
   backend can (QMP), otherwise stop, snapshot, start;
6. deletions wait for the next stop, unless the app is stopped or every backend
   deletes live; a failed deletion is reported on its snapshot and retried;
7. volume generations nothing uses any more (no config, no snapshot) are
   destroyed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from evesnap_core.backend import Backend
from evesnap_core.crashpoints import crashpoint
from evesnap_core.discovery import Registry
from evesnap_core.durable import ensure_dir
from evesnap_core.errors import ConfigError, EvesnapError, RollbackBlocked, UnknownTarget
from evesnap_core.handler_types import (
    Capability,
    LiveAttachment,
    ProgressCallback,
    ReadOnlyExport,
    SnapshotInfo,
    VolumeHandle,
    VolumeSpec,
)
from evesnap_core.model.config import (
    AppInstanceConfig,
    DeviceConfig,
    SnapshotConfig,
    SnapshotDesc,
    SnapshotType,
    UUIDandVersion,
    Volume,
    VolumeRef,
)
from evesnap_core.model.info import (
    UsageInfo,
    VolumeResources,
    ZInfoApp,
    ZInfoSnapshot,
    ZInfoVolume,
    ZSwState,
)
from evesnap_core.orchestrator.content import ContentResolver
from evesnap_core.orchestrator.snapshot_plan import KnownSnapshot, plan_snapshots
from evesnap_core.orchestrator.store import MemoryStore, OrchestratorStore
from evesnap_core.orchestrator.tree import DeleteScope, children, descendants
from evesnap_core.records import (
    AppRecord,
    Problem,
    SnapshotOrigin,
    SnapshotRecord,
    VolumeRecord,
    VolumeSnapshot,
    utcnow,
)
from evesnap_core.runtime_hookspecs import AppSpec
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.settings import default_runtime_dir

log = logging.getLogger(__name__)


@dataclass
class Reports:
    apps: list[ZInfoApp] = field(default_factory=list)
    volumes: list[ZInfoVolume] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "apps": [a.to_json_dict() for a in self.apps],
            "volumes": [v.to_json_dict() for v in self.volumes],
        }


def fixup_restored_config(
    snapshot_config: AppInstanceConfig, current: AppInstanceConfig
) -> AppInstanceConfig:
    """The reference's rollback fixups: the snapshot's config, with the snapshot list
    and the restart and purge counters of the current config."""
    data = snapshot_config.model_copy(deep=True)
    snap = data.snapshot or SnapshotConfig()
    current_list = current.snapshot.snapshots if current.snapshot else []
    data.snapshot = snap.model_copy(update={"snapshots": list(current_list)})
    data.restart = current.restart
    data.purge = current.purge
    return data


def volume_keys(config: AppInstanceConfig) -> list[str]:
    """The volume generations an app config uses, in its order (first = boot disk)."""
    return [f"{ref.uuid}#{ref.generation_count}" for ref in config.volume_ref_list]


def _counter(cmd: object) -> int:
    return int(getattr(cmd, "counter", 0) or 0)


def _display_name(name: str) -> str:
    """A display name is for people: one printable line, at most 256 characters."""
    if len(name) > 256 or not all(c.isprintable() for c in name):
        raise ValueError("a display name is one printable line of at most 256 characters")
    return name


@dataclass
class DeleteOutcome:
    """What a local delete did, snapshot by snapshot."""

    deleted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Waiting for the app to stop (its backends cannot delete live)."""
    failed: dict[str, str] = field(default_factory=dict)
    forgotten: dict[str, list[str]] = field(default_factory=dict)
    """Metadata-only: the record is gone; these backend snapshots stay."""

    def to_json(self) -> dict[str, object]:
        return {
            "deleted": self.deleted,
            "pending": self.pending,
            "failed": self.failed,
            "forgotten": self.forgotten,
        }


class Orchestrator:
    """Reconciles to a DeviceConfig; keeps the records; produces the reports."""

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
        self.registry = registry
        self.runtime = runtime
        self.resolver = resolver or ContentResolver()
        self.store = store or MemoryStore()
        self.clock = clock
        self.stop_timeout = stop_timeout
        self.progress = progress
        """Told about long copies (building a volume, a whole-volume snapshot)."""
        self.apps, self.volumes = self.store.load()
        self.device: DeviceConfig = self.store.load_device() or DeviceConfig()
        self.damaged = self.store.damaged()
        """Stored state that could not be read, reported on its app (and snapshot)."""
        if recover:  # a read-only look (evesnap status beside a running agent) changes nothing
            self.recover()

    def _undo_orphan(self, handle: VolumeHandle, snapshot_id: str) -> None:
        """Remove a backend snapshot that no record owns; a whole-copy backend may
        hold the volume's only data in it (a retired generation): give it back first."""
        backend = self.registry.get(handle.backend)
        if not any(i.snapshot_id == snapshot_id for i in backend.list_snapshots(handle)):
            return
        if backend.info.snapshot_space == "full_copy":
            try:
                backend.volume_details(handle)
            except EvesnapError:
                backend.rollback(handle, snapshot_id)
        backend.delete_snapshot(handle, snapshot_id)

    def recover(self) -> list[str]:
        """Resolve what a crash left half done; say what was done.

        A snapshot that never became available is undone on every volume (no
        backend snapshot without a record); a rollback or a deletion is simply
        carried out again, since its target is recorded and both are idempotent.
        """
        done = []
        for intent in self.store.unfinished():
            app = self.apps.get(UUID(str(intent["app"])))
            sid = str(intent["snapshot"])
            snap = app.snapshots.get(sid) if app else None
            if intent["kind"] == "clone":
                details = intent.get("details")
                target = str(details.get("target", "")) if isinstance(details, dict) else ""
                if not any(str(a) == target for a in self.apps):
                    for made in [v for v in self.volumes.values() if v.clone_owner == target and target]:
                        with contextlib.suppress(EvesnapError):
                            self._destroy_volume(made)
                    done.append(f"undid unfinished clone of snapshot {sid} of app {intent['app']}")
            elif intent["kind"] == "snapshot" and (snap is None or snap.state != "available"):
                keys = snap.volume_keys if snap else []
                for key in keys:
                    volume = self.volumes.get(key)
                    if volume is not None and volume.handle is not None:
                        with contextlib.suppress(EvesnapError):
                            self._undo_orphan(volume.handle, sid)
                done.append(f"undid unfinished snapshot {sid} of app {intent['app']}")
            else:
                done.append(
                    f"{intent['kind']} of snapshot {sid} of app {intent['app']} resumes from its record"
                )
            self.store.commit(str(intent["intent"]))
        for line in done:
            log.warning("recovery: %s", line)
        return done

    # ================================================================ reconcile

    def reconcile(self, device: DeviceConfig) -> Reports:
        """Bring the device to `device`; return the reports."""
        self.device = device
        self.store.save_device(device)
        for volume in device.volumes:
            self._guard_volume(volume.uuid, partial(self._ensure_config_volume, volume))
        wanted = {app.uuid for app in device.apps}
        for app in device.apps:
            record = self.apps.get(app.uuid) or AppRecord(uuid=app.uuid)
            self.apps[app.uuid] = record
            self._guard_app(record, partial(self._reconcile_app, record, app))
        for gone in [u for u, r in self.apps.items() if u not in wanted and r.origin != "clone"]:
            record = self.apps[gone]
            self._guard_app(record, partial(self._remove_app, record))
        self._release_unused_volumes()
        return self.reports()

    def _guard_app(self, record: AppRecord, step: Callable[[], None]) -> None:
        try:
            step()
        except EvesnapError as exc:
            log.warning("app %s: %s", record.uuid, exc)
            record.problems.append(Problem(description=str(exc), time=self.clock()))
            self.store.save_app(record)
        except Exception as exc:  # one app's bad data never takes the agent down
            log.exception("app %s: unexpected failure", record.uuid)
            record.problems.append(
                Problem(description=f"internal error: {type(exc).__name__}: {exc}", time=self.clock())
            )
            self.store.save_app(record)

    def _guard_volume(self, volume_uuid: UUID, step: Callable[[], None]) -> None:
        try:
            step()
        except EvesnapError as exc:
            log.warning("volume %s: %s", volume_uuid, exc)

    def _reconcile_app(self, record: AppRecord, config: AppInstanceConfig) -> None:
        record.config = config
        record.name = config.displayname
        record.problems = []
        plan = plan_snapshots(self._known(record), config.snapshot, record.last_rollback_counter)
        if plan.rollback_counter is not None:
            record.last_rollback_counter = plan.rollback_counter
        if plan.error:
            record.problems.append(Problem(description=plan.error, time=self.clock()))
            self.store.save_app(record)
            return
        record.problems.extend(
            Problem(description=w, severity="warning", time=self.clock()) for w in plan.warnings
        )
        for sid in plan.cancel:
            self._forget_snapshot(record, sid)
        for sid in plan.delete:
            record.snapshots[sid].state = "deleting"
            self.store.save_snapshot(record.snapshots[sid])
        for desc in plan.new_requests:
            mine = record.snapshots.get(str(desc.id))
            if mine is not None:  # an id the device already has: the controller adopts it
                mine.origin = "controller"
                self.store.save_snapshot(mine)
            else:
                self._add_request(record, desc, "controller")
        if plan.rollback_to:
            record.rollback_target = plan.rollback_to
        self.store.save_app(record)
        self._converge(record)

    # ================================================================ the app's steps

    def _converge(self, record: AppRecord) -> None:
        if record.rollback_target:
            self._rollback(record, record.rollback_target)
        target = self._target_config(record)
        self._ensure_app_volumes(target)
        state = self.runtime.state(record.uuid)
        if state == "crashed":  # its VM died without being asked to stop: say so, then start it again
            record.problems.append(
                Problem(
                    description=f"app {record.name or record.uuid} died (its VM exited unasked); restarted",
                    time=self.clock(),
                )
            )
            self.runtime.stop(record.uuid, self.stop_timeout)  # forget the dead VM
        running = state == "running"
        update = record.deployed is not None and self._is_update(record.deployed, target)
        immediate = [s for s in self._requested(record) if s.type == SnapshotType.SNAPSHOT_TYPE_IMMEDIATE]
        if immediate and running and not update and self._all_live(record, Capability.LIVE_SNAPSHOT):
            attachments = self.runtime.attachments(record.uuid)
            for snap in immediate:
                self._take_snapshot(record, snap, attachments=attachments)
            immediate = []
        deleting = [s for s in record.snapshots.values() if s.state == "deleting"]
        if deleting and running and self._all_live(record, Capability.LIVE_DELETE):
            attachments = self.runtime.attachments(record.uuid)
            for snap in deleting:
                self._delete_snapshot(record, snap, attachments=attachments)
            deleting = []
        first_deploy = record.deployed is None
        restart = record.deployed is not None and _counter(target.restart) > _counter(record.deployed.restart)
        if running and (update or immediate or restart or not target.activate):
            self._stop(record)
            running = False
            crashpoint("converge.app_stopped")
        if not running:
            for snap in deleting:
                self._delete_snapshot(record, snap)  # deletions before creations
            if update and record.deployed is not None:
                retiring = set(volume_keys(record.deployed)) - set(volume_keys(target))
                for snap in self._requested(record):
                    if snap.type != SnapshotType.SNAPSHOT_TYPE_IMMEDIATE:
                        self._take_snapshot(record, snap, retiring=retiring)
            for snap in immediate:
                self._take_snapshot(record, snap)
            if update or first_deploy or restart or record.deployed != target:
                record.deployed = target
            self.store.save_app(record)
            crashpoint("converge.deployed")
        if target.activate and not running:
            self.runtime.start(self._app_spec(record, target))
        self.store.save_app(record)

    def _target_config(self, record: AppRecord) -> AppInstanceConfig:
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

    def _stop(self, record: AppRecord) -> None:
        if not self.runtime.stop(record.uuid, self.stop_timeout):
            raise EvesnapError(f"app {record.uuid} did not stop within {self.stop_timeout:g} s")

    def _app_spec(self, record: AppRecord, config: AppInstanceConfig) -> AppSpec:
        handles = []
        for key in volume_keys(config):
            volume = self.volumes.get(key)
            if volume is None or volume.handle is None:
                raise EvesnapError(f"volume {key} of app {record.uuid} is not ready")
            handles.append(volume.handle)
        return AppSpec(
            uuid=record.uuid, name=config.displayname, version=config.version, volumes=tuple(handles)
        )

    def _remove_app(self, record: AppRecord) -> None:
        if self.runtime.state(record.uuid) == "running":
            self._stop(record)
        for snap in list(record.snapshots.values()):
            if snap.state == "requested":
                self._forget_snapshot(record, snap.id)
            else:
                self._delete_snapshot(record, snap)
        if any(s.state != "requested" for s in record.snapshots.values()):
            return  # a deletion failed: keep the app's record so that it is retried and reported
        del self.apps[record.uuid]
        self.store.remove_app(record.uuid)

    # ================================================================ snapshots

    def _known(self, record: AppRecord) -> list[KnownSnapshot]:
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

    def _requested(self, record: AppRecord) -> list[SnapshotRecord]:
        return sorted(
            (s for s in record.snapshots.values() if s.state == "requested"), key=lambda s: s.requested
        )

    def _add_request(self, record: AppRecord, desc: SnapshotDesc, origin: SnapshotOrigin) -> SnapshotRecord:
        base = record.deployed or record.config
        assert base is not None
        snap = SnapshotRecord.of_config(
            base,
            id=str(desc.id),
            app=record.uuid,
            type=desc.type,
            origin=origin,
            requested=self.clock(),
            volume_keys=volume_keys(base),
        )
        record.snapshots[snap.id] = snap
        self.store.save_snapshot(snap)
        return snap

    def _detach_from_tree(self, record: AppRecord, snap: SnapshotRecord) -> None:
        """Before a snapshot goes: its children and the app's current pointer move up to its parent."""
        if record.current_snapshot == snap.id:
            record.current_snapshot = snap.parent
        for other in record.snapshots.values():
            if other.parent == snap.id:
                other.parent = snap.parent
                self.store.save_snapshot(other)

    def _forget_snapshot(self, record: AppRecord, sid: str) -> None:
        record.snapshots.pop(sid, None)
        self.store.remove_snapshot(record.uuid, sid)

    def _take_snapshot(
        self,
        record: AppRecord,
        snap: SnapshotRecord,
        retiring: set[str] | None = None,
        attachments: Mapping[str, LiveAttachment] | None = None,
    ) -> None:
        """Snapshot every volume of `snap`, all or nothing.

        Volumes are grouped by backend (one atomic group call each where the
        backend can); generations a purge retires are handed over last, since
        undoing those means giving the volume back, not deleting the snapshot.
        """
        retiring = retiring or set()
        made: list[tuple[Backend, VolumeHandle, bool]] = []
        infos: dict[str, tuple[VolumeHandle, SnapshotInfo]] = {}
        intent = self.store.begin("snapshot", record.uuid, snap.id, {"volumes": ",".join(snap.volume_keys)})
        crashpoint("snapshot.intent_recorded")
        try:
            by_backend: dict[str, list[VolumeHandle]] = {}
            for key in snap.volume_keys:
                handle = self._handle(key)
                if attachments and key in attachments:
                    handle = handle.attached(attachments[key])
                by_backend.setdefault(handle.backend, []).append(handle)
            for name, handles in by_backend.items():
                plain = [h for h in handles if h.key not in retiring]
                if plain:
                    backend = self.registry.get(name)
                    for info in backend.snapshot_group(plain, snap.id, self.progress):
                        handle = next(h for h in plain if h.uuid == info.volume)
                        infos[handle.key] = (handle, info)
                        made.append((backend, handle, False))
                    crashpoint("snapshot.backend_group_done")
            for name, handles in by_backend.items():
                for handle in (h for h in handles if h.key in retiring):
                    backend = self.registry.get(name)
                    infos[handle.key] = (
                        handle,
                        backend.snapshot(handle, snap.id, self.progress, retiring=True),
                    )
                    made.append((backend, handle, True))
                    crashpoint("snapshot.volume_retired")
        except EvesnapError as exc:
            self._undo_snapshot(snap.id, made)
            snap.error = Problem(description=f"snapshot failed: {exc}", time=self.clock())
            self.store.save_snapshot(snap)
            self.store.commit(intent)
            return
        snap.volumes = {
            key: VolumeSnapshot(handle=h.attached(None), info=i, retired=key in retiring)
            for key, (h, i) in infos.items()
        }
        snap.state = "available"
        snap.created = self.clock()
        snap.error = None
        snap.parent = record.current_snapshot
        record.current_snapshot = snap.id
        for key in retiring & set(infos):
            self.volumes.pop(key, None)  # the generation now belongs to the snapshot
            self.store.remove_volume(key)
        self.store.save_snapshot(snap)
        self.store.save_app(record)
        crashpoint("snapshot.recorded")
        self.store.commit(intent)

    @staticmethod
    def _undo_snapshot(snapshot_id: str, made: list[tuple[Backend, VolumeHandle, bool]]) -> None:
        for backend, handle, retired in reversed(made):
            try:
                if retired:  # give the retired generation back before dropping the snapshot
                    backend.rollback(handle.attached(None), snapshot_id)
                backend.delete_snapshot(handle.attached(None), snapshot_id)
            except EvesnapError as undo:
                log.warning("cleanup of snapshot %s on %s failed: %s", snapshot_id, handle.key, undo)

    def _delete_snapshot(
        self, record: AppRecord, snap: SnapshotRecord, attachments: Mapping[str, LiveAttachment] | None = None
    ) -> None:
        intent = self.store.begin("delete", record.uuid, snap.id, {})
        crashpoint("delete.intent_recorded")
        if snap.exports:
            self._close_exports(snap)
        failures = []
        for key, part in list(snap.volumes.items()):
            handle = part.handle
            if attachments and key in attachments:
                handle = handle.attached(attachments[key])
            try:
                self.registry.get(handle.backend).delete_snapshot(handle, snap.id)
            except EvesnapError as exc:
                failures.append(f"{key}: {exc}")
                continue
            del snap.volumes[key]
            crashpoint("delete.volume_done")
        if failures:
            snap.error = Problem(description="deletion failed: " + "; ".join(failures), time=self.clock())
            self.store.save_snapshot(snap)
            self.store.commit(intent)
            return
        self._detach_from_tree(record, snap)
        self._forget_snapshot(record, snap.id)
        self.store.save_app(record)
        crashpoint("delete.recorded")
        self.store.commit(intent)

    def _rollback(self, record: AppRecord, sid: str) -> list[str]:
        snap = record.snapshots.get(sid)
        assert record.config is not None
        if snap is None or snap.state != "available":
            record.rollback_target = None
            raise EvesnapError(f"rollback to snapshot {sid!r}: no such available snapshot")
        intent = self.store.begin("rollback", record.uuid, sid, {})
        crashpoint("rollback.intent_recorded")
        destroyed: list[str] = []
        try:
            blockers = self._rollback_blockers(snap)
            if blockers and not record.rollback_destroy_newer:
                raise RollbackBlocked(sid, blockers)
            if self.runtime.state(record.uuid) == "running":
                self._stop(record)
                crashpoint("rollback.app_stopped")
            for key, part in snap.volumes.items():
                backend = self.registry.get(part.handle.backend)
                result = backend.rollback(part.handle, sid, destroy_newer=record.rollback_destroy_newer)
                destroyed += [d for d in result.destroyed if d not in destroyed]
                crashpoint("rollback.volume_done")
                if part.retired:  # the retained generation is a volume again
                    spec = VolumeSpec(
                        uuid=part.handle.uuid,
                        generation=result.live_generation
                        if result.live_generation is not None
                        else part.handle.generation,
                        format=part.handle.format,
                        purgeable=True,
                        backend=part.handle.backend,
                    )
                    self.volumes[key] = VolumeRecord(spec=spec, handle=part.handle, created=self.clock())
                    self.store.save_volume(self.volumes[key])
        except EvesnapError as exc:
            snap.error = Problem(description=f"rollback failed: {exc}", time=self.clock())
            record.rollback_target = None
            record.rollback_destroy_newer = False
            self.store.save_snapshot(snap)
            self.store.save_app(record)
            self.store.commit(intent)
            raise
        restored = snap.app_config()
        record.restored = restored
        record.rolled_back_from = record.config.version
        record.deployed = fixup_restored_config(restored, record.config)
        record.rollback_target = None
        record.rollback_destroy_newer = False
        record.current_snapshot = sid
        snap.error = None
        self._drop_destroyed(record, sid, destroyed)
        self.store.save_snapshot(snap)
        self.store.save_app(record)
        crashpoint("rollback.recorded")
        self.store.commit(intent)
        return destroyed

    def _rollback_blockers(self, snap: SnapshotRecord) -> list[str]:
        """Newer snapshots a backend that rolls back only to its newest would destroy."""
        blockers: list[str] = []
        for part in snap.volumes.values():
            backend = self.registry.get(part.handle.backend)
            if backend.has(Capability.ROLLBACK_ANY):
                continue
            check = backend.rollback_check(part.handle, snap.id)
            blockers += [b for b in check.blockers if b not in blockers]
        return blockers

    def _drop_destroyed(self, record: AppRecord, sid: str, destroyed: list[str]) -> None:
        """Snapshots a rollback destroyed on some volume are gone as app snapshots:
        what is left of them elsewhere goes too, and the app says so."""
        for gone in destroyed:
            victim = record.snapshots.get(gone)
            if victim is None or gone == sid:
                continue
            for part in victim.volumes.values():
                with contextlib.suppress(EvesnapError):
                    self.registry.get(part.handle.backend).delete_snapshot(part.handle, gone)
            self._detach_from_tree(record, victim)
            self._forget_snapshot(record, gone)
        if destroyed:
            record.problems.append(
                Problem(
                    description=f"rollback to {sid} destroyed the newer snapshots {', '.join(destroyed)}",
                    severity="warning",
                    time=self.clock(),
                )
            )

    # ================================================================ local operations

    def snapshot_now(
        self,
        app: UUID,
        snapshot_id: str | None = None,
        origin: SnapshotOrigin = "local",
        display_name: str = "",
    ) -> str:
        """Take an immediate snapshot outside the controller's list (a device-made id)."""
        record = self._app(app)
        desc = SnapshotDesc(
            id=UUID(snapshot_id) if snapshot_id else uuidlib.uuid4(),
            type=SnapshotType.SNAPSHOT_TYPE_IMMEDIATE,
        )
        if str(desc.id) in record.snapshots:
            return str(desc.id)
        snap = self._add_request(record, desc, origin)
        if display_name:
            snap.display_name = _display_name(display_name)
            self.store.save_snapshot(snap)
        self._converge(record)
        if snap.state != "available":
            raise EvesnapError(snap.error.description if snap.error else f"snapshot {snap.id} was not taken")
        return snap.id

    def rollback_now(self, app: UUID, snapshot_id: str, destroy_newer: bool = False) -> list[str]:
        """Roll back at once; newer snapshots stay where every backend can keep them.

        Returns the snapshots destroyed on the way, which happens only with
        `destroy_newer` on a backend that rolls back only to its newest (ZFS).
        """
        record = self._app(app)
        self._snapshot(record, snapshot_id)
        record.rollback_target = snapshot_id
        record.rollback_destroy_newer = destroy_newer
        self.store.save_app(record)
        destroyed = self._rollback(record, snapshot_id)
        self._converge(record)
        return destroyed

    def delete_now(
        self, app: UUID, snapshot_id: str, scope: DeleteScope = "snapshot", force: bool = False
    ) -> DeleteOutcome:
        """Delete a snapshot, its descendants, both, or only evesnap's record of it.

        A snapshot the controller lists is refused without `force`: the
        controller deletes it by leaving it out of its list.
        """
        record = self._app(app)
        snap = self._snapshot(record, snapshot_id)
        below = descendants(record, snapshot_id)
        targets = {
            "snapshot": [snap],
            "with-descendants": [*below, snap],
            "descendants-only": below,
            "metadata-only": [snap],
        }[scope]
        listed = self._controller_listed(record)
        held = [t.id for t in targets if t.id in listed]
        if held and not force:
            raise ConfigError(
                "SNAPSHOT_ID",
                f"snapshot {', '.join(held)} is in the controller's list: the controller deletes it by "
                "leaving it out (or use --force, and the controller's next config takes it again)",
            )
        outcome = DeleteOutcome()
        if scope == "metadata-only":
            outcome.forgotten[snap.id] = [f"{key}: {part.info.name}" for key, part in snap.volumes.items()]
            self._close_exports(snap)
            self._detach_from_tree(record, snap)
            self._forget_snapshot(record, snap.id)
            self.store.save_app(record)
            return outcome
        for target in targets:
            target.state = "deleting"
            self.store.save_snapshot(target)
        self._converge(record)
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
        record = self._app(app)
        snap = self._snapshot(record, snapshot_id)
        snap.display_name = _display_name(name)
        self.store.save_snapshot(snap)

    def describe_snapshot(self, app: UUID, snapshot_id: str) -> dict[str, Any]:
        """Everything known about a snapshot: its record, its place in the tree, and
        each volume's snapshot as its backend sees it now (or why it cannot say)."""
        record = self._app(app)
        snap = self._snapshot(record, snapshot_id)
        data: dict[str, Any] = json.loads(snap.model_dump_json(exclude={"config_json"}))
        data.update(
            appName=record.name,
            current=record.current_snapshot == snap.id,
            children=[c.id for c in children(record, snap.id)],
            descendants=[d.id for d in descendants(record, snap.id)],
            config=json.loads(snap.config_json),
        )
        seen: dict[str, Any] = {}
        for key, part in snap.volumes.items():
            try:
                infos = self.registry.get(part.handle.backend).list_snapshots(part.handle)
                found = next((i for i in infos if i.snapshot_id == snap.id), None)
                seen[key] = (
                    json.loads(found.model_dump_json()) if found else {"error": "missing in the backend"}
                )
            except EvesnapError as exc:
                seen[key] = {"error": str(exc)}
        data["backendView"] = seen
        return data

    def open_snapshot(self, app: UUID, snapshot_id: str) -> dict[str, ReadOnlyExport]:
        """Expose every volume of a snapshot read-only, all or none; open until closed."""
        record = self._app(app)
        snap = self._snapshot(record, snapshot_id, available=True)
        if snap.exports:
            return dict(snap.exports)
        where = ensure_dir(default_runtime_dir() / "exports")
        opened: dict[str, ReadOnlyExport] = {}
        try:
            for key, part in snap.volumes.items():
                backend = self.registry.get(part.handle.backend)
                opened[key] = backend.open_snapshot(part.handle, snap.id, str(where))
        except EvesnapError:
            for key, export in opened.items():
                with contextlib.suppress(EvesnapError):
                    self.registry.get(snap.volumes[key].handle.backend).close_snapshot(
                        snap.volumes[key].handle, export
                    )
            raise
        snap.exports = opened
        self.store.save_snapshot(snap)
        return dict(opened)

    def close_snapshot(self, app: UUID, snapshot_id: str) -> None:
        record = self._app(app)
        snap = self._snapshot(record, snapshot_id)
        self._close_exports(snap, strict=True)

    def _close_exports(self, snap: SnapshotRecord, strict: bool = False) -> None:
        failures = []
        for key, export in list(snap.exports.items()):
            part = snap.volumes.get(key)
            try:
                if part is not None:
                    self.registry.get(part.handle.backend).close_snapshot(part.handle, export)
            except EvesnapError as exc:
                failures.append(f"{key}: {exc}")
                continue
            del snap.exports[key]
        self.store.save_snapshot(snap)
        if failures and strict:
            raise EvesnapError("; ".join(failures))

    def clone_app(self, app: UUID, snapshot_id: str, name: str, start: bool = True) -> UUID:
        """A new app from a snapshot: its config under a new UUID, a clone of each
        volume. All or nothing; the device's own (origin clone)."""
        record = self._app(app)
        snap = self._snapshot(record, snapshot_id, available=True)
        new = uuidlib.uuid4()
        intent = self.store.begin("clone", record.uuid, snap.id, {"target": str(new)})
        made = self._clone_volumes(snap, f"{record.uuid}@{snap.id}", owner=str(new), intent=intent)
        source = snap.app_config()
        refs = {f"{r.uuid}#{r.generation_count}": r for r in source.volume_ref_list}
        config = source.model_copy(
            update={
                "uuidandversion": UUIDandVersion(uuid=new, version=source.version),
                "displayname": _display_name(name),
                "activate": start,
                "snapshot": None,
                "volume_ref_list": [
                    VolumeRef(
                        uuid=v.spec.uuid,
                        generation_count=v.spec.generation,
                        mount_dir=refs[key].mount_dir if key in refs else "",
                    )
                    for key, v in made
                ],
            }
        )
        clone = AppRecord(
            uuid=new,
            name=config.displayname,
            config=config,
            origin="clone",
            cloned_from=f"{record.uuid}@{snap.id}",
        )
        self.apps[new] = clone
        self.store.save_app(clone)
        crashpoint("clone.recorded")
        self.store.commit(intent)
        self._converge(clone)
        return new

    def clone_volumes(self, app: UUID, snapshot_id: str) -> list[VolumeRecord]:
        """New volumes from a snapshot, for other uses; removed with remove_clone."""
        record = self._app(app)
        snap = self._snapshot(record, snapshot_id, available=True)
        batch = uuidlib.uuid4().hex
        intent = self.store.begin("clone", record.uuid, snap.id, {"target": batch})
        made = self._clone_volumes(snap, f"{record.uuid}@{snap.id}", owner=batch, intent=intent)
        self.store.commit(intent)
        return [v for _, v in made]

    def _clone_volumes(
        self, snap: SnapshotRecord, source: str, owner: str, intent: str
    ) -> list[tuple[str, VolumeRecord]]:
        """Clone every volume of `snap`, in the app's order; on a failure the ones
        made are destroyed again and the intent is resolved. Each is recorded as
        soon as it exists (what a crash leaves, recovery destroys by its owner)."""
        made: list[tuple[str, VolumeRecord]] = []
        try:
            for key in snap.volume_keys or list(snap.volumes):
                part = snap.volumes[key]
                known = self.volumes.get(key)
                spec = VolumeSpec(
                    uuid=uuidlib.uuid4(),
                    format=part.handle.format,
                    size_bytes=known.spec.size_bytes if known else 0,
                    display_name=f"clone of {key} at {snap.id}",
                    backend=part.handle.backend,
                )
                handle = self.registry.get(part.handle.backend).clone(
                    part.handle, snap.id, spec, self.progress
                )
                volume = VolumeRecord(
                    spec=spec,
                    handle=handle,
                    origin="clone",
                    cloned_from=f"{source}/{key}",
                    clone_owner=owner,
                    created=self.clock(),
                )
                self.volumes[spec.key] = volume
                self.store.save_volume(volume)
                made.append((key, volume))
                crashpoint("clone.volume_done")
        except EvesnapError:
            for _, volume in reversed(made):
                try:
                    self._destroy_volume(volume)
                except EvesnapError as undo:  # left recorded: shown by status, removed by clone delete
                    log.warning("cleanup of cloned volume %s failed: %s", volume.key, undo)
            self.store.commit(intent)
            raise
        return made

    def _destroy_volume(self, volume: VolumeRecord) -> None:
        if volume.handle is not None:
            self.registry.get(volume.handle.backend).destroy_volume(volume.handle)
        self.volumes.pop(volume.key, None)
        self.store.remove_volume(volume.key)

    def app_volumes(self, record: AppRecord) -> list[VolumeRecord]:
        config = record.deployed or record.config
        keys = volume_keys(config) if config else []
        return [self.volumes[k] for k in keys if k in self.volumes]

    def remove_clone(self, target: UUID) -> str:
        """Remove a cloned app (stopped, its snapshots and volumes deleted) or a cloned volume."""
        record = self.apps.get(target)
        if record is not None:
            if record.origin != "clone":
                raise EvesnapError(f"app {target} is the controller's: it goes when its config leaves it out")
            volumes = self.app_volumes(record)
            self._remove_app(record)
            if target in self.apps:
                raise EvesnapError(f"a snapshot of clone {target} could not be deleted (see evesnap status)")
            for owned in volumes:
                self._destroy_volume(owned)
            return f"app {target} ({record.name}) and its {len(volumes)} volume(s)"
        volume = next((v for v in self.volumes.values() if v.spec.uuid == target), None)
        if volume is None or volume.origin != "clone":
            raise UnknownTarget(f"no clone {target} (clones are listed by 'evesnap status')")
        users = [str(a.uuid) for a in self.apps.values() if volume in self.app_volumes(a)]
        if users:
            raise EvesnapError(f"volume {target} belongs to app {', '.join(users)}: remove that clone")
        self._destroy_volume(volume)
        return f"volume {target}"

    def _controller_listed(self, record: AppRecord) -> set[str]:
        snapshot = record.config.snapshot if record.config else None
        return {str(d.id) for d in snapshot.snapshots} if snapshot else set()

    def _snapshot(self, record: AppRecord, snapshot_id: str, available: bool = False) -> SnapshotRecord:
        snap = record.snapshots.get(snapshot_id)
        if snap is None or (available and snap.state != "available"):
            what = "no available snapshot" if available else "no snapshot"
            raise UnknownTarget(f"{what} {snapshot_id} of app {record.name or record.uuid}")
        return snap

    def _app(self, app: UUID) -> AppRecord:
        record = self.apps.get(app)
        if record is None or record.config is None:
            raise UnknownTarget(f"no app {app}")
        return record

    # ================================================================ volumes

    def _handle(self, key: str) -> VolumeHandle:
        volume = self.volumes.get(key)
        if volume is None or volume.handle is None:
            raise EvesnapError(f"volume {key} does not exist")
        return volume.handle

    def _ensure_config_volume(self, volume: Volume) -> None:
        self._ensure_volume(self.resolver.volume_spec(self.device, volume), volume)

    def _ensure_app_volumes(self, config: AppInstanceConfig) -> None:
        for ref in config.volume_ref_list:
            key = f"{ref.uuid}#{ref.generation_count}"
            if key in self.volumes and self.volumes[key].state == "ready":
                continue
            try:
                volume = self.device.volume(ref.uuid)
            except KeyError:
                raise ConfigError("volumeRefList", f"unknown volume {ref.uuid}") from None
            spec = self.resolver.volume_spec(self.device, volume, generation=ref.generation_count)
            self._ensure_volume(spec, volume)

    def _ensure_volume(self, spec: VolumeSpec, volume: Volume) -> VolumeRecord:
        existing = self.volumes.get(spec.key)
        if existing is not None and existing.state == "ready":
            return existing
        try:
            backend = self.registry.claim(spec)
            source = self.resolver.source(self.device, volume)
            spec = spec.model_copy(update={"backend": backend.name})
            handle = (
                backend.populate_volume(spec, source, self.progress)
                if source is not None
                else backend.create_volume(spec)
            )
            record = VolumeRecord(spec=spec, handle=handle, created=self.clock())
        except EvesnapError as exc:
            record = VolumeRecord(
                spec=spec, state="error", error=Problem(description=str(exc), time=self.clock())
            )
            self.volumes[spec.key] = record
            self.store.save_volume(record)
            raise
        self.volumes[spec.key] = record
        self.store.save_volume(record)
        return record

    def _all_live(self, record: AppRecord, capability: Capability) -> bool:
        keys = volume_keys(record.deployed) if record.deployed else []
        try:
            return bool(keys) and all(
                self.registry.get(self._handle(k).backend).has(capability) for k in keys
            )
        except EvesnapError:
            return False

    def _used_keys(self) -> set[str]:
        used: set[str] = set()
        for volume in self.device.volumes:
            used.add(f"{volume.uuid}#{volume.generation_count}")
        used.update(k for k, v in self.volumes.items() if v.origin == "clone")
        for record in self.apps.values():
            for cfg in (record.config, record.deployed, record.restored):
                if cfg is not None:
                    used.update(volume_keys(cfg))
            for snap in record.snapshots.values():
                used.update(snap.volumes)
                if snap.state == "requested":
                    used.update(snap.volume_keys)
        return used

    def _release_unused_volumes(self) -> None:
        used = self._used_keys()
        for key in [k for k in self.volumes if k not in used]:
            volume = self.volumes[key]
            try:
                if volume.handle is not None:
                    self.registry.get(volume.handle.backend).destroy_volume(volume.handle)
            except EvesnapError as exc:
                volume.error = Problem(description=f"destroy failed: {exc}", time=self.clock())
                self.store.save_volume(volume)
                continue
            del self.volumes[key]
            self.store.remove_volume(key)

    # ================================================================ reports

    def reports(self, for_controller: bool = False) -> Reports:
        """Apps and volumes; the controller's view leaves out clones, which are the device's own."""
        return Reports(
            apps=[
                self.app_report(r)
                for r in self.apps.values()
                if r.config is not None and not (for_controller and r.origin == "clone")
            ],
            volumes=[
                self.volume_report(v)
                for v in self.volumes.values()
                if not (for_controller and v.origin == "clone")
            ],
        )

    def app_report(self, record: AppRecord) -> ZInfoApp:
        running = self.runtime.state(record.uuid) == "running"
        errors = [p for p in record.problems if p.severity == "error"]
        state = (
            ZSwState.ERROR if errors and not running else (ZSwState.RUNNING if running else ZSwState.HALTED)
        )
        shown = [
            s
            for s in record.snapshots.values()
            if s.state == "available"
            or (s.error is not None and s.state != "deleting")
            or (s.state == "deleting" and s.error is not None)
        ]
        shown.sort(key=lambda s: s.created or s.requested)
        deployed = record.deployed or record.config
        damaged = [d for d in self.damaged if d.app == record.uuid]
        return ZInfoApp(
            app_id=str(record.uuid),
            app_version=deployed.version if deployed else "",
            app_name=record.name,
            app_err=[p.to_error_info() for p in record.problems]
            + [Problem(description=d.description).to_error_info() for d in damaged if d.snapshot is None],
            state=state,
            volume_refs=[str(r.uuid) for r in deployed.volume_ref_list] if deployed else [],
            snapshots=[self._snapshot_report(s) for s in shown]
            + [
                ZInfoSnapshot(id=d.snapshot, snap_err=Problem(description=d.description).to_error_info())
                for d in damaged
                if d.snapshot is not None
            ],
        )

    @staticmethod
    def _snapshot_report(snap: SnapshotRecord) -> ZInfoSnapshot:
        return ZInfoSnapshot(
            id=snap.id,
            config_id=str(snap.config_id),
            config_version=snap.config_version,
            create_time=snap.created,
            type=snap.type,
            snap_err=snap.error.to_error_info() if snap.error else None,
        )

    def volume_report(self, volume: VolumeRecord) -> ZInfoVolume:
        return ZInfoVolume(
            uuid=str(volume.spec.uuid),
            display_name=volume.spec.display_name,
            usage=UsageInfo(create_time=volume.created),
            resources=VolumeResources(max_size_bytes=volume.spec.size_bytes),
            state=ZSwState.CREATED_VOLUME if volume.state == "ready" else ZSwState.ERROR,
            volume_err=volume.error.to_error_info() if volume.error else None,
            generation_count=volume.spec.generation,
        )

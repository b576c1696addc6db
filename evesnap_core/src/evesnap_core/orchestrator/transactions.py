"""Snapshot transactions: take, undo, delete, roll back, clone and open app snapshots.

Where the orchestrator's flow reaches the backends for an app's snapshots. Each
operation spans every volume of the app, possibly on several backends, and is
journalled as one intent of the ledger (``with ledger.intent(...)``): a failure
undoes the volumes done so far, a crash leaves the intent to `recovery`. Every
crash point of those operations (``snapshot.*``, ``delete.*``, ``rollback.*``,
``clone.*``) is here; the record each one writes is written here too, through
the ledger. Deciding *when* to run them is `converge`'s job.

Longer than 400 lines on purpose: these are all the journalled operations, and
their crash safety (each step, its crash point, its undo, the record it writes)
is reviewed in this one file; split up, an undo would sit apart from its step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid as uuidlib
from collections.abc import Iterator, Mapping

from evesnap_core.backend import Backend
from evesnap_core.crashpoints import crashpoint
from evesnap_core.durable import ensure_dir
from evesnap_core.errors import EvesnapError, RollbackBlocked
from evesnap_core.handler_types import (
    Capability,
    LiveAttachment,
    ReadOnlyExport,
    SnapshotInfo,
    VolumeHandle,
    VolumeSpec,
)
from evesnap_core.model.config import (
    AppInstanceConfig,
    SnapshotConfig,
    SnapshotDesc,
    UUIDandVersion,
    VolumeRef,
)
from evesnap_core.model.validation import free_text
from evesnap_core.orchestrator.ledger import Intent, volume_keys
from evesnap_core.orchestrator.quiesce import Quiesce, Quiescer
from evesnap_core.orchestrator.volumes import Volumes
from evesnap_core.orchestrator.wiring import Wiring
from evesnap_core.records import (
    ADOPTED_META,
    AppRecord,
    Problem,
    SnapshotOrigin,
    SnapshotRecord,
    VolumeRecord,
    VolumeSnapshot,
)
from evesnap_core.settings import default_runtime_dir

log = logging.getLogger(__name__)

LIVE_STALL_ENV = "EVESNAP_LIVE_STALL_WARN_MS"
DEFAULT_LIVE_STALL_MS = 100


def live_stall_bound_ms() -> int:
    """Above this (``$EVESNAP_LIVE_STALL_WARN_MS``, 100 ms) a live snapshot is reported as a warning."""
    raw = os.environ.get(LIVE_STALL_ENV, "")
    return int(raw) if raw.isdigit() else DEFAULT_LIVE_STALL_MS


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


def display_name(name: str, field: str = "name") -> str:
    """A display name is for people: one printable line, at most 256 characters
    (ConfigError, a ValueError, naming what is wrong: `validation.free_text`)."""
    return free_text(name, field)


def backend_id(part: VolumeSnapshot, snapshot_id: str) -> str:
    """The id `part`'s backend knows this volume snapshot by."""
    return part.info.snapshot_id if part.info.meta.get(ADOPTED_META) else snapshot_id


@contextlib.contextmanager
def _offline() -> Iterator[Quiesce]:
    """A snapshot of a stopped app: what the volumes held when its VM ended."""
    yield Quiesce(detail="taken while the app was not running")


class SnapshotTransactions:
    def __init__(self, wiring: Wiring, volumes: Volumes) -> None:
        self.w = wiring
        self.volumes = volumes
        self.quiescer = Quiescer(wiring.ledger, wiring.freeze_timeout, log_dir=default_runtime_dir())

    def stop_app(self, record: AppRecord) -> None:
        """Stop the app's VM, or fail saying it did not stop in time."""
        if not self.w.runtime.stop(record.uuid, self.w.stop_timeout):
            raise EvesnapError(f"app {record.uuid} did not stop within {self.w.stop_timeout:g} s")

    # ------------------------------------------------------------ records only

    def add_request(self, record: AppRecord, desc: SnapshotDesc, origin: SnapshotOrigin) -> SnapshotRecord:
        """Record a requested snapshot of the app's current volumes."""
        base = record.deployed or record.config
        assert base is not None
        snap = SnapshotRecord.of_config(
            base,
            id=str(desc.id),
            app=record.uuid,
            type=desc.type,
            origin=origin,
            requested=self.w.now(),
            volume_keys=volume_keys(base),
        )
        self.w.ledger.add_snapshot(record, snap)
        return snap

    def detach_from_tree(self, record: AppRecord, snap: SnapshotRecord) -> None:
        """Before a snapshot goes: its children and the app's current pointer move up to its parent."""
        if record.current_snapshot == snap.id:
            record.current_snapshot = snap.parent
        for other in record.snapshots.values():
            if other.parent == snap.id:
                other.parent = snap.parent
                self.w.ledger.save_snapshot(other)

    # ------------------------------------------------------------ take, undo

    def take(
        self,
        record: AppRecord,
        snap: SnapshotRecord,
        retiring: set[str] | None = None,
        attachments: Mapping[str, LiveAttachment] | None = None,
    ) -> None:
        """Snapshot every volume of `snap`, all or nothing; a failure is recorded on `snap`.

        Volumes are grouped by backend (one atomic group call each where the
        backend can); generations a purge retires are handed over last, since
        undoing those means giving the volume back, not deleting the snapshot.
        """
        ledger = self.w.ledger
        retiring = retiring or set()
        made: list[tuple[Backend, VolumeHandle, bool]] = []
        infos: dict[str, tuple[VolumeHandle, SnapshotInfo]] = {}

        def failed(exc: EvesnapError) -> None:
            snap.error = Problem(description=f"snapshot failed: {exc}", time=self.w.now())
            ledger.save_snapshot(snap)

        opened: Intent | None = None
        try:
            with ledger.intent(
                "snapshot", record.uuid, snap.id, {"volumes": ",".join(snap.volume_keys)}
            ) as opened:
                crashpoint("snapshot.intent_recorded")
                opened.on_error(failed)
                opened.on_error(lambda _: self.undo(snap.id, made))
                by_backend: dict[str, list[VolumeHandle]] = {}
                for key in snap.volume_keys:
                    handle = ledger.handle(key)
                    if attachments and key in attachments:
                        handle = handle.attached(attachments[key])
                    by_backend.setdefault(handle.backend, []).append(handle)
                live = any(h.attachment is not None for hs in by_backend.values() for h in hs)
                agent = self.w.runtime.guest_agent(record.uuid) if live else None
                with self.quiescer.around(record.uuid, snap.id, agent) if live else _offline() as quiesce:
                    began = time.perf_counter()
                    for name, handles in by_backend.items():
                        plain = [h for h in handles if h.key not in retiring]
                        if plain:
                            backend = self.w.registry.get(name)
                            for info in backend.snapshot_group(plain, snap.id, self.w.progress):
                                handle = next(h for h in plain if h.uuid == info.volume)
                                infos[handle.key] = (handle, info)
                                made.append((backend, handle, False))
                            crashpoint("snapshot.backend_group_done")
                    if live:
                        snap.live_snapshot_ms = round((time.perf_counter() - began) * 1000)
                snap.consistency, snap.consistency_detail = quiesce.consistency, quiesce.detail
                self._warn_if_slow(record, snap)
                for name, handles in by_backend.items():
                    for handle in (h for h in handles if h.key in retiring):
                        backend = self.w.registry.get(name)
                        infos[handle.key] = (
                            handle,
                            backend.snapshot(handle, snap.id, self.w.progress, retiring=True),
                        )
                        made.append((backend, handle, True))
                        crashpoint("snapshot.volume_retired")
                opened.keep()
                snap.volumes = {
                    key: VolumeSnapshot(handle=h.attached(None), info=i, retired=key in retiring)
                    for key, (h, i) in infos.items()
                }
                snap.state = "available"
                snap.created = self.w.now()
                snap.error = None
                snap.parent = record.current_snapshot
                record.current_snapshot = snap.id
                for key in retiring & set(infos):
                    ledger.drop_volume(key)  # the generation now belongs to the snapshot
                ledger.save_snapshot(snap)
                ledger.save_app(record)
                crashpoint("snapshot.recorded")
        except EvesnapError:
            if opened is None or opened.kept:
                raise

    @staticmethod
    def undo(snapshot_id: str, made: list[tuple[Backend, VolumeHandle, bool]]) -> None:
        """Remove the volume snapshots a failed take made, last first."""
        for backend, handle, retired in reversed(made):
            try:
                if retired:  # give the retired generation back before dropping the snapshot
                    backend.rollback(handle.attached(None), snapshot_id)
                backend.delete_snapshot(handle.attached(None), snapshot_id)
            except EvesnapError as undo:
                log.warning("cleanup of snapshot %s on %s failed: %s", snapshot_id, handle.key, undo)

    def undo_orphan(self, handle: VolumeHandle, snapshot_id: str) -> None:
        """Remove a backend snapshot that no record owns; a whole-copy backend may
        hold the volume's only data in it (a retired generation): give it back first."""
        backend = self.w.backend_of(handle)
        if not any(i.snapshot_id == snapshot_id for i in backend.list_snapshots(handle)):
            return
        if backend.info.snapshot_space == "full_copy":
            try:
                backend.volume_details(handle)
            except EvesnapError:
                backend.rollback(handle, snapshot_id)
        backend.delete_snapshot(handle, snapshot_id)

    def _warn_if_slow(self, record: AppRecord, snap: SnapshotRecord) -> None:
        """A live snapshot whose call took longer than the bound held the guest's
        I/O about as long (benchmarks/guest_stall.py): say so on the app."""
        took, bound = snap.live_snapshot_ms, live_stall_bound_ms()
        if took is None or took <= bound:
            return
        text = (
            f"live snapshot {snap.id} held the guest's disk I/O for about {took} ms (above the "
            f"{bound} ms bound, {LIVE_STALL_ENV}): its cost grows with the volumes' mapped clusters"
        )
        log.warning("%s", text)
        record.problems.append(Problem(description=text, severity="warning", time=self.w.now()))

    # ------------------------------------------------------------ delete

    def delete(
        self, record: AppRecord, snap: SnapshotRecord, attachments: Mapping[str, LiveAttachment] | None = None
    ) -> None:
        """Delete `snap` on every volume; a failure is recorded on it (and retried)."""
        ledger = self.w.ledger
        with ledger.intent("delete", record.uuid, snap.id) as opened:
            opened.keep()  # a deletion is never undone: recovery carries it out again
            crashpoint("delete.intent_recorded")
            if snap.exports:
                self.close_exports(snap)
            failures = []
            for key, part in list(snap.volumes.items()):
                handle = part.handle
                if attachments and key in attachments:
                    handle = handle.attached(attachments[key])
                try:
                    self.w.backend_of(handle).delete_snapshot(handle, backend_id(part, snap.id))
                except EvesnapError as exc:
                    failures.append(f"{key}: {exc}")
                    continue
                del snap.volumes[key]
                crashpoint("delete.volume_done")
            if failures:
                snap.error = Problem(description="deletion failed: " + "; ".join(failures), time=self.w.now())
                ledger.save_snapshot(snap)
                return
            self.detach_from_tree(record, snap)
            ledger.forget_snapshot(record, snap.id)
            ledger.save_app(record)
            crashpoint("delete.recorded")

    # ------------------------------------------------------------ rollback

    def rollback(self, record: AppRecord, sid: str) -> list[str]:
        """Stop the app, roll every volume back to `sid`, restore the snapshot's
        config; return the newer snapshots a backend destroyed on the way."""
        ledger = self.w.ledger
        snap = record.snapshots.get(sid)
        assert record.config is not None
        if snap is None or snap.state != "available":
            record.rollback_target = None
            raise EvesnapError(f"rollback to snapshot {sid!r}: no such available snapshot")

        def failed(exc: EvesnapError) -> None:
            snap.error = Problem(description=f"rollback failed: {exc}", time=self.w.now())
            record.rollback_target = None
            record.rollback_destroy_newer = False
            ledger.save_snapshot(snap)
            ledger.save_app(record)

        with ledger.intent("rollback", record.uuid, sid) as opened:
            crashpoint("rollback.intent_recorded")
            opened.on_error(failed)
            destroyed: list[str] = []
            blockers = self.rollback_blockers(snap)
            if blockers and not record.rollback_destroy_newer:
                raise RollbackBlocked(sid, blockers)
            if self.w.runtime.state(record.uuid) == "running":
                self.stop_app(record)
                crashpoint("rollback.app_stopped")
            for key, part in snap.volumes.items():
                result = self.w.backend_of(part.handle).rollback(
                    part.handle, backend_id(part, sid), destroy_newer=record.rollback_destroy_newer
                )
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
                    restored_volume = VolumeRecord(spec=spec, handle=part.handle, created=self.w.now())
                    ledger.save_volume(restored_volume, key=key)  # under the snapshot's key
            opened.keep()
            restored = snap.app_config()
            record.restored = restored
            record.rolled_back_from = record.config.version
            record.deployed = fixup_restored_config(restored, record.config)
            record.rollback_target = None
            record.rollback_destroy_newer = False
            record.current_snapshot = sid
            snap.error = None
            self._drop_destroyed(record, sid, destroyed)
            ledger.save_snapshot(snap)
            ledger.save_app(record)
            crashpoint("rollback.recorded")
        return destroyed

    def rollback_blockers(self, snap: SnapshotRecord) -> list[str]:
        """Newer snapshots a backend that rolls back only to its newest would destroy."""
        blockers: list[str] = []
        for part in snap.volumes.values():
            backend = self.w.backend_of(part.handle)
            if backend.has(Capability.ROLLBACK_ANY):
                continue
            check = backend.rollback_check(part.handle, backend_id(part, snap.id))
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
                    self.w.backend_of(part.handle).delete_snapshot(part.handle, gone)
            self.detach_from_tree(record, victim)
            self.w.ledger.forget_snapshot(record, gone)
        if destroyed:
            record.problems.append(
                Problem(
                    description=f"rollback to {sid} destroyed the newer snapshots {', '.join(destroyed)}",
                    severity="warning",
                    time=self.w.now(),
                )
            )

    # ------------------------------------------------------------ clone

    def clone_app(self, record: AppRecord, snap: SnapshotRecord, name: str, start: bool) -> AppRecord:
        """A new app from `snap`: its config under a new UUID, a clone of each
        volume. All or nothing; the device's own (origin clone). Not started yet."""
        new = uuidlib.uuid4()
        with self.w.ledger.intent("clone", record.uuid, snap.id, {"target": str(new)}) as opened:
            made = self._clone_each(record, snap, owner=str(new), intent=opened)
            opened.keep()
            source = snap.app_config()
            refs = {f"{r.uuid}#{r.generation_count}": r for r in source.volume_ref_list}
            config = source.model_copy(
                update={
                    "uuidandversion": UUIDandVersion(uuid=new, version=source.version),
                    "displayname": display_name(name),
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
            self.w.ledger.add_app(clone)
            crashpoint("clone.recorded")
        return clone

    def clone_volumes(self, record: AppRecord, snap: SnapshotRecord) -> list[VolumeRecord]:
        """New volumes from `snap`, for other uses (one batch, all or nothing)."""
        batch = uuidlib.uuid4().hex
        with self.w.ledger.intent("clone", record.uuid, snap.id, {"target": batch}) as opened:
            made = self._clone_each(record, snap, owner=batch, intent=opened)
        return [v for _, v in made]

    def _source_handles(self, record: AppRecord, snap: SnapshotRecord) -> dict[str, VolumeHandle]:
        """The handles of `snap`'s volumes as the backend must see them now: with
        the runtime's live attachment while the app runs, so that the backend reads
        the snapshot beside the VM (and never runs an offline tool against it)."""
        held = self.w.runtime.attachments(record.uuid)
        return {key: part.handle.attached(held.get(key)) for key, part in snap.volumes.items()}

    def _clone_each(
        self, record: AppRecord, snap: SnapshotRecord, owner: str, intent: Intent
    ) -> list[tuple[str, VolumeRecord]]:
        """Clone every volume of `snap`, in the app's order; on a failure the ones
        made are destroyed again. Each is recorded as soon as it exists (what a
        crash leaves, recovery destroys by its owner)."""
        source = f"{record.uuid}@{snap.id}"
        made: list[tuple[str, VolumeRecord]] = []

        def destroy_made(_: EvesnapError) -> None:
            for _key, volume in reversed(made):
                try:
                    self.volumes.destroy(volume)
                except EvesnapError as undo:  # left recorded: shown by status, removed by clone delete
                    log.warning("cleanup of cloned volume %s failed: %s", volume.key, undo)

        intent.on_error(destroy_made)
        sources = self._source_handles(record, snap)
        for key in snap.volume_keys or list(snap.volumes):
            part = snap.volumes[key]
            known = self.w.ledger.volumes.get(key)
            spec = VolumeSpec(
                uuid=uuidlib.uuid4(),
                format=part.handle.format,
                size_bytes=known.spec.size_bytes if known else 0,
                display_name=f"clone of {key} at {snap.id}",
                backend=part.handle.backend,
            )
            handle = self.w.backend_of(part.handle).clone(
                sources[key], backend_id(part, snap.id), spec, self.w.progress
            )
            volume = VolumeRecord(
                spec=spec,
                handle=handle,
                origin="clone",
                cloned_from=f"{source}/{key}",
                clone_owner=owner,
                created=self.w.now(),
            )
            self.w.ledger.save_volume(volume)
            made.append((key, volume))
            crashpoint("clone.volume_done")
        return made

    def recorded_clones(self, owner: str) -> list[VolumeRecord]:
        """The cloned volumes recorded for `owner` (a cloned app, or a batch)."""
        return [v for v in list(self.w.ledger.volumes.values()) if v.clone_owner == owner and owner]

    # ------------------------------------------------------------ open, close

    def open(self, record: AppRecord, snap: SnapshotRecord) -> dict[str, ReadOnlyExport]:
        """Expose every volume of `snap` read-only, all or none; open until closed.
        A running app's volumes go with their live attachment (see _source_handles)."""
        if snap.exports:
            return dict(snap.exports)
        where = ensure_dir(default_runtime_dir() / "exports")
        opened: dict[str, ReadOnlyExport] = {}
        try:
            for key, handle in self._source_handles(record, snap).items():
                part = snap.volumes[key]
                opened[key] = self.w.backend_of(handle).open_snapshot(
                    handle, backend_id(part, snap.id), str(where)
                )
        except EvesnapError:
            for key, export in opened.items():
                with contextlib.suppress(EvesnapError):
                    handle = snap.volumes[key].handle
                    self.w.backend_of(handle).close_snapshot(handle, export)
            raise
        snap.exports = opened
        self.w.ledger.save_snapshot(snap)
        return dict(opened)

    def close_exports(self, snap: SnapshotRecord, strict: bool = False) -> None:
        """Close every read-only export of `snap`; with `strict`, a failure is raised."""
        failures = []
        for key, export in list(snap.exports.items()):
            part = snap.volumes.get(key)
            try:
                if part is not None:
                    self.w.backend_of(part.handle).close_snapshot(part.handle, export)
            except EvesnapError as exc:
                failures.append(f"{key}: {exc}")
                continue
            del snap.exports[key]
        self.w.ledger.save_snapshot(snap)
        if failures and strict:
            raise EvesnapError("; ".join(failures))

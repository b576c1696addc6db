"""The durable OrchestratorStore: the reference's snapshot folders plus evesnap's own state.

Layout under the persist folder (folders 0700, files 0600)::

    snapshots/<snapshotID>/appInstanceConfig.json       as in the reference
    snapshots/<snapshotID>/volumesSnapshotStatus.json
    snapshots/<snapshotID>/snapshotInstanceStatus.json
    evesnap/apps/<app uuid>.json      last rollback counter, current snapshot, configs
    evesnap/volumes/<hash>.json       one volume generation each
    evesnap/device.json               the last device config applied
    evesnap/journal/<intent>.json     multi-step operations begun, not yet resolved
    evesnap/quarantine/<name>.<tag>/  what could not be read, with a note saying why

Every file is replaced atomically (temporary file, fsync, rename, fsync of the
folder). A new snapshot folder is built whole under a hidden name and renamed
into place, and a removed one is renamed away before it is emptied, so a crash
never leaves a snapshot with some of its files. At start, leftovers of such a
crash are cleared, every folder is read and matched to its app by the app UUID,
and whatever cannot be read is moved to the quarantine and reported as an
error on its snapshot (or app), without stopping anything else from loading.

Longer than 400 lines on purpose: it is the one implementation of
`OrchestratorStore`, and the layout above, the crash-safe write order and the
fast start-up read that depends on it are checked together in this one file
(the file formats themselves are in `stored.py` and `files.py`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import stat
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import pydantic_core

from evesnap_core.durable import atomic_write, confine, confined, durable_unlink, ensure_dir, fsync_dir
from evesnap_core.errors import NoSpace, StateError
from evesnap_core.model.config import DeviceConfig
from evesnap_core.records import AppRecord, Damaged, SnapshotRecord, VolumeRecord
from evesnap_core.state import legacy
from evesnap_core.state.eve_snapshots import is_eve_written, read_eve_snapshot
from evesnap_core.state.files import (
    APP_CONFIG,
    SNAPSHOT_FILES,
    SNAPSHOT_STATUS,
    STAMPED_FILES,
    VOLUMES_STATUS,
    AppInstanceConfigFile,
    AppState,
    DeviceState,
    Intent,
    QuarantineNote,
    SnapshotDescription,
    SnapshotFacts,
    SnapshotInstanceStatus,
    StoredUUIDandVersion,
    VolumeSnapshotMeta,
    VolumesSnapshotStatus,
    VolumeState,
    eve_volume_meta,
    go_app_fields,
)
from evesnap_core.state.stored import (
    StoredFile,
    file_kind,
    parse_stored,
    read_state_bytes,
    read_stored,
    too_deep,
)

log = logging.getLogger(__name__)

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Snapshot ids that may name a folder: no separator, no leading dot, no '..' trick."""
BUILDING = ".new-"
REMOVING = ".old-"


def snapshot_folder_name(snapshot_id: str) -> str:
    if not SAFE_ID.fullmatch(snapshot_id) or ".." in snapshot_id:
        raise StateError(snapshot_id, "a snapshot id must be letters, digits, '.', '_' or '-' (at most 128)")
    return snapshot_id


class PersistStore:
    """Records of apps, snapshots and volumes under one persist folder.

    `writable=False` gives a read-only view (``evesnap status`` beside a running
    agent): it never writes, moves or deletes anything, and still reports what
    it could not read.
    """

    def __init__(self, persist: Path, writable: bool = True) -> None:
        self.persist = persist
        self.writable = writable
        self.snapshots_dir = persist / "snapshots"
        self.root = persist / "evesnap"
        self.apps_dir = self.root / "apps"
        self.volumes_dir = self.root / "volumes"
        self.journal_dir = self.root / "journal"
        self.quarantine_dir = self.root / "quarantine"
        confine(persist)  # every write below it: never through a link (durable.confined)
        for folder in (self.snapshots_dir, self.root, self.apps_dir, self.volumes_dir, self.journal_dir):
            # a state folder replaced by a link is refused (UnsafePath), read-only view included
            if writable:
                ensure_dir(folder)
            else:
                confined(folder)
        confined(self.quarantine_dir)
        self.warnings: list[str] = []
        """What loaded with a tolerated difference (an unknown or a missing optional field)."""
        self._damaged: list[Damaged] = []
        self._apps: dict[UUID, AppRecord] = {}
        """The engine's own records (not copies)."""
        self._on_disk: dict[UUID, set[str]] = {}
        """Snapshot folders written, per app."""
        self._written: dict[str, str] = {}
        """The digest of what each file holds (by path), so that an unchanged record costs no write."""
        self._facts: dict[str, _Facts] = {}
        """Snapshot id -> what its folder held when last written or read in full
        (kept in its app's file: `files.SnapshotFacts`)."""
        self._app_written: dict[UUID, tuple[str, tuple[tuple[str, int], ...]]] = {}
        """App -> (its record's JSON, its facts' serials) as its file holds them: an
        unchanged app costs no dump of its facts (a no-op reconcile saves every app)."""
        self._legacy: legacy.LegacyState | None = None

    # ================================================================ loading

    def load(self) -> tuple[dict[UUID, AppRecord], dict[str, VolumeRecord]]:
        with _collector_paused():
            return self._load()

    def _load(self) -> tuple[dict[UUID, AppRecord], dict[str, VolumeRecord]]:
        self._legacy = legacy.read(self.persist)
        if self._legacy is not None and self.writable:
            self._adopt_legacy(self._legacy)
        if self.writable:
            self._clear_leftovers()
        apps: dict[UUID, AppRecord] = {}
        apps_dir = os.fspath(self.apps_dir)
        known: dict[str, tuple[UUID, SnapshotFacts]] = {}
        as_loaded: dict[UUID, str] = {}
        """Snapshot id -> the app whose file has facts of its folder, and those facts."""
        twice: set[str] = set()
        for name in self._names(self.apps_dir, dirs=False):
            read = self._read(f"{apps_dir}/{name}", AppState, app=_uuid_or_none(name[: -len(".json")]))
            if read is not None:
                state, raw = read
                record = state.app  # the file's own object: nothing else holds it
                if record.snapshots:  # an app file holds none (its snapshots are their folders)
                    record.snapshots = {}
                apps[record.uuid] = record
                if state.snapshots and self.writable:
                    as_loaded[record.uuid] = _app_part(raw, record.uuid) or record.model_dump_json(
                        by_alias=True
                    )
                for sid, facts in state.snapshots.items():
                    if facts.record.id == sid and facts.record.app == record.uuid:
                        if sid in known:
                            twice.add(sid)
                        known[sid] = (record.uuid, facts)
        for sid in twice:  # two apps' files claim one folder (copied by hand?): read it in full
            del known[sid]
        snapshots_dir = os.fspath(self.snapshots_dir)
        for name, mode in self._not_folders(self.snapshots_dir):
            self._set_aside(
                self.snapshots_dir / name,
                f"{snapshots_dir}/{name} is {file_kind(mode)}, not a snapshot folder",
                app=_owner_of(name, apps),
                snapshot=name,
            )
        with _folder_fd(snapshots_dir) as at:
            for name in self._names(self.snapshots_dir, dirs=True):
                snap = self._unchanged_snapshot(name, known.get(name), at)
                if snap is None:
                    snap = self._read_snapshot(name, f"{snapshots_dir}/{name}", apps, at)
                if snap is not None:
                    self._restored(apps, snap)
        for app, record_json in as_loaded.items():  # what its file holds, for save_app to compare
            self._app_written[app] = (record_json, self._facts_key(apps[app], loaded_only=True))
        volumes: dict[str, VolumeRecord] = {}
        volumes_dir = os.fspath(self.volumes_dir)
        users: dict[str, UUID] = {}

        def user(name: str) -> UUID | None:  # worked out only if a volume's file is damaged
            if not users:
                users.update(self._volume_users(apps))
            return users.get(name)

        for name in self._names(self.volumes_dir, dirs=False):
            vread = self._read(f"{volumes_dir}/{name}", VolumeState, owner=partial(user, name))
            if vread is not None:
                volumes[vread[0].volume.key] = vread[0].volume
        if self._legacy is not None and not self.writable:
            apps, volumes = self._legacy.apps | apps, self._legacy.volumes | volumes
        self._damaged.extend(self._quarantined())
        self._apps = dict(apps)
        return apps, volumes

    def _restored(self, apps: dict[UUID, AppRecord], snap: SnapshotRecord) -> None:
        # an app whose own file is not written yet (a crash) or was set aside (reported)
        # still gets its snapshots back: they are matched by the app UUID in them
        record = apps.get(snap.app)
        if record is None:
            record = apps[snap.app] = AppRecord(uuid=snap.app)
        record.snapshots[snap.id] = snap
        self._on_disk.setdefault(snap.app, set()).add(snap.id)

    def _unchanged_snapshot(
        self, name: str, known: tuple[UUID, SnapshotFacts] | None, at: int | None
    ) -> SnapshotRecord | None:
        """The record of the folder `name` from its app's file, if the folder is
        exactly as it was when that was written (its stamp): no file of it read."""
        if known is None:
            return None
        app, facts = known
        if len(facts.digests) != len(STAMPED_FILES) or not SAFE_ID.fullmatch(name) or ".." in name:
            return None
        if _stamp(name, at, self.snapshots_dir) != facts.stamp:
            return None
        folder = f"{os.fspath(self.snapshots_dir)}/{name}"
        for file, digest in zip(STAMPED_FILES, facts.digests, strict=True):
            self._written[f"{folder}/{file}"] = digest
        self._facts[name] = _Facts(app, facts.stamp, facts.digests, None)
        return facts.record

    def _volume_users(self, apps: dict[UUID, AppRecord]) -> dict[str, UUID]:
        """The file name of each volume record -> the app whose config uses it: a
        damaged volume record is reported on that app."""
        users: dict[str, UUID] = {}
        for record in apps.values():
            for config in (record.config, record.deployed):
                for ref in config.volume_ref_list if config is not None else []:
                    name = self._volume_path(f"{ref.uuid}#{ref.generation_count}").name
                    users.setdefault(name, record.uuid)
        return users

    def damaged(self) -> list[Damaged]:
        """Everything that could not be read, this start and in earlier ones (still quarantined)."""
        return list(self._damaged)

    @staticmethod
    def _names(folder: Path, dirs: bool) -> list[str]:
        """Sorted names in `folder`, hidden ones left out: its folders, or its ``.json`` files."""
        try:
            with os.scandir(folder) as entries:
                if dirs:  # real folders: a link to one is not followed
                    names = [e.name for e in entries if e.name[0] != "." and e.is_dir(follow_symlinks=False)]
                else:
                    names = [e.name for e in entries if e.name[0] != "." and e.name.endswith(".json")]
        except (FileNotFoundError, NotADirectoryError):
            return []
        names.sort()
        return names

    @staticmethod
    def _not_folders(folder: Path) -> list[tuple[str, int]]:
        """What stands in `folder` where only folders belong (a file, a link, a FIFO), with its mode."""
        try:
            with os.scandir(folder) as entries:
                found = [
                    (e.name, e.stat(follow_symlinks=False).st_mode)
                    for e in entries
                    if e.name[0] != "." and not e.is_dir(follow_symlinks=False)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        found.sort()
        return found

    def _files(self, folder: Path) -> list[Path]:
        return [folder / name for name in self._names(folder, dirs=False)]

    def _folders(self, folder: Path) -> list[Path]:
        return [folder / name for name in self._names(folder, dirs=True)]

    def _read(
        self,
        path: str | Path,
        model: type[Any],
        app: UUID | None = None,
        owner: Callable[[], UUID | None] | None = None,
    ) -> tuple[Any, bytes] | None:
        """The file as `model` and the bytes it held, or None after it was set aside
        (reported on `app`, or on what `owner` says: asked only then)."""
        where = os.fspath(path)
        try:
            raw = _slurp(where)
            loaded = parse_stored(model, raw, where)
        except (StateError, OSError) as exc:
            reason = f"unreadable ({exc.strerror}) in {where}" if isinstance(exc, OSError) else str(exc)
            self._set_aside(Path(where), reason, app=owner() if owner else app)
            return None
        self.warnings.extend(loaded.warnings)
        self._written[where] = _digest(raw)
        return loaded.value, raw

    def _read_snapshot(
        self, name: str, folder: str, apps: dict[UUID, AppRecord] | None = None, at: int | None = None
    ) -> SnapshotRecord | None:
        """One snapshot folder, its three files agreeing with each other and the folder's name."""
        stamp = None
        if self.writable:
            _remove_tmp(folder)
            # before the files are read: a change while they are read makes it stale, never wrong
            stamp = _stamp(name, at, self.snapshots_dir)
        try:
            snapshot_folder_name(name)
            paths = f"{folder}/{SNAPSHOT_STATUS}", f"{folder}/{VOLUMES_STATUS}", f"{folder}/{APP_CONFIG}"
            raws = [_slurp_stored(path) for path in paths]
            if is_eve_written(raws[0]):  # a folder EVE itself left: adopted, not set aside
                adopted, warnings = read_eve_snapshot(name, raws, paths, self.persist)
                self.warnings.extend(warnings)
                for path, raw in zip(paths, raws, strict=True):
                    self._written[path] = _digest(raw)
                return adopted
            status = parse_stored(SnapshotInstanceStatus, raws[0], paths[0])
            volumes = parse_stored(VolumesSnapshotStatus, raws[1], paths[1])
            config = parse_stored(AppInstanceConfigFile, raws[2], paths[2])
            s, v, c = status.value, volumes.value, config.value
            if s.snapshot.snapshot_id != name or v.snapshot_id != name:
                raise StateError(folder, f"the files name another snapshot than {name}")
            if not s.app_instance_id == v.app_uuid == c.app_instance_id:
                raise StateError(folder, "the files name different apps")
        except StateError as exc:
            where = Path(folder)
            owner = _app_of(where) or _owner_of(name, apps or {})
            self._set_aside(where, str(exc), app=owner, snapshot=name)
            return None
        warned = False
        for loaded in (status, volumes, config):
            self.warnings.extend(loaded.warnings)
            warned = warned or bool(loaded.warnings)
        # what the files hold: an unchanged record is not written again, an upgraded one is
        digests = tuple(_digest(raw) for raw in raws)
        for path, digest in zip(paths, digests, strict=True):
            self._written[path] = digest
        record = SnapshotRecord(
            id=name,
            app=s.app_instance_id,
            type=s.snapshot.snapshot_type,
            display_name=s.snapshot.display_name,
            state=s.state,
            origin=s.origin,
            requested=s.time_triggered or s.time_created or datetime.now(UTC),
            created=s.time_created,
            parent=s.parent,
            error=s.error,
            exports=s.exports,
            consistency=s.consistency,
            consistency_detail=s.consistency_detail,
            live_snapshot_ms=s.live_snapshot_ms,
            config_id=c.config_id,
            config_version=s.config_version.version,
            config_json=_config_json(c.config),
            volume_keys=v.volume_keys,
            volumes={key: meta.volume for key, meta in v.evesnap_volumes.items()},
        )
        if stamp is not None and not warned:  # read again only if it changes (or warns, every start)
            self._facts[name] = _Facts(record.app, stamp, digests, record.model_dump_json().encode())
        return record

    # ================================================================ quarantine

    def _set_aside(
        self, path: Path, reason: str, app: UUID | None = None, snapshot: str | None = None
    ) -> None:
        """Move what cannot be read out of the way, with a note; one bad file blocks nothing else."""
        log.error("%s", reason)
        if snapshot is not None:
            self._facts.pop(snapshot, None)
        where = path
        if self.writable:
            tag = uuidlib.uuid4().hex[:8]
            target = self.quarantine_dir / f"{path.name}.{tag}"
            note = QuarantineNote(
                schema_version=QuarantineNote.SCHEMA,
                reason=reason,
                original=str(path),
                app_instance_id=app,
                snapshot_id=snapshot,
                time=datetime.now(UTC),
            )
            try:
                ensure_dir(target)
                with contextlib.suppress(OSError):
                    path.rename(target / path.name)
                    fsync_dir(path.parent)
                    where = target / path.name
                atomic_write(target / "reason.json", note.dump())
            except (OSError, NoSpace) as exc:  # a full disk: reported all the same, moved next time
                log.error("cannot set %s aside: %s", path, exc)  # noqa: TRY400 (one line, no traceback)
            moved = f"; moved to {where}" if where != path else "; left in place"
            self._damaged.append(Damaged(f"{reason}{moved}", app, snapshot))
        else:
            self._damaged.append(Damaged(reason, app, snapshot))

    def _quarantined(self) -> list[Damaged]:
        """What earlier starts set aside: reported until an operator removes it."""
        found = []
        for folder in self._folders(self.quarantine_dir):
            noted = {d.description for d in self._damaged}
            try:
                note = read_stored(QuarantineNote, folder / "reason.json").value
            except StateError:
                continue
            description = f"{note.reason}; moved to {folder} on {note.time:%Y-%m-%d %H:%M:%S}"
            if not any(d.startswith(note.reason) for d in noted):
                found.append(Damaged(description, note.app_instance_id, note.snapshot_id))
        return found

    def _clear_leftovers(self) -> None:
        """A crash while a snapshot folder was built or removed left it hidden: finish the job.

        A folder being built was never part of the state (its intent is undone by
        the engine's recovery); a folder being removed was already gone from it.
        """
        with contextlib.suppress(FileNotFoundError):
            for entry in self.snapshots_dir.iterdir():
                if entry.name.startswith((BUILDING, REMOVING)):
                    shutil.rmtree(entry, ignore_errors=True)
        # the snapshot folders' own are removed as each is read (load)
        for folder in (self.root, self.apps_dir, self.volumes_dir, self.journal_dir, self.snapshots_dir):
            _remove_tmp(os.fspath(folder))

    # ================================================================ device

    def load_device(self) -> DeviceConfig | None:
        path = self.root / "device.json"
        if not path.exists():
            return self._legacy.device if self._legacy is not None else None
        with _collector_paused():
            read = self._read(path, DeviceState)
        return read[0].config if read is not None else None

    def save_device(self, config: DeviceConfig) -> None:
        path = self.root / "device.json"
        if os.fspath(path) not in self._written:  # not read (only when needed): unchanged, not rewritten
            with contextlib.suppress(OSError, StateError):
                self._written[os.fspath(path)] = _digest(read_state_bytes(path))
        self._write(path, DeviceState(schema_version=DeviceState.SCHEMA, config=config))

    # ================================================================ apps and snapshots

    def _write(self, path: Path, value: StoredFile) -> None:
        self._write_bytes(path, value.dump())

    def _write_bytes(self, path: Path, data: bytes) -> None:
        key = os.fspath(path)
        digest = _digest(data)
        if self._written.get(key) == digest:
            return
        atomic_write(path, data)
        self._written[key] = digest

    def _app_path(self, app: UUID) -> Path:
        return self.apps_dir / f"{app}.json"

    def save_app(self, record: AppRecord) -> None:
        """The app's own state; snapshots new to the store are written (first, so
        that the app's file has their facts), gone ones removed."""
        self._apps[record.uuid] = record
        on_disk = self._on_disk.get(record.uuid, set())
        for sid, snap in record.snapshots.items():
            if sid not in on_disk:
                self.save_snapshot(snap)
        app_only = record.model_copy(update={"snapshots": {}})
        written = (app_only.model_dump_json(by_alias=True), self._facts_key(record))
        if self._app_written.get(record.uuid) != written:  # else: its file holds just that
            self._write(
                self._app_path(record.uuid),
                AppState(
                    schema_version=AppState.SCHEMA,
                    app_instance_id=record.uuid,
                    app=app_only,
                    snapshots=self._facts_of(record),
                ),
            )
            self._app_written[record.uuid] = written
        for sid in self._on_disk.get(record.uuid, set()) - set(record.snapshots):
            self.remove_snapshot(record.uuid, sid)

    def _facts_key(self, record: AppRecord, loaded_only: bool = False) -> tuple[tuple[str, int], ...]:
        """Which facts the app's file holds (or would): its snapshots' facts, by serial."""
        return tuple(
            (sid, facts.serial)
            for sid in sorted(record.snapshots)
            if (facts := self._facts.get(sid)) is not None
            and facts.app == record.uuid
            and (facts.record is None or not loaded_only)
        )

    def _facts_of(self, record: AppRecord) -> dict[str, SnapshotFacts]:
        """The facts of the app's snapshot folders as they are on disk (its file's part),
        each built once."""
        mine = {
            sid: facts
            for sid in sorted(record.snapshots)
            if (facts := self._facts.get(sid)) is not None and facts.app == record.uuid
        }
        unbuilt = [f for f in mine.values() if f.model is None and f.record is None]
        as_loaded = self._loaded_records(record.uuid) if unbuilt else {}
        out: dict[str, SnapshotFacts] = {}
        for sid, facts in mine.items():
            if facts.model is None:
                try:
                    if facts.record is not None:
                        snap = SnapshotRecord.model_validate_json(facts.record)
                    elif sid in as_loaded:
                        snap = SnapshotRecord.model_validate(as_loaded[sid])
                    else:
                        continue
                except ValueError:  # not what was loaded after all: the folder is read next time
                    continue
                facts.model = SnapshotFacts(stamp=facts.stamp, digests=facts.digests, record=snap)
            out[sid] = facts.model
        return out

    def _loaded_records(self, app: UUID) -> dict[str, Any]:
        """The snapshot records in the app's file as loaded (JSON), if it is unchanged since."""
        path = self._app_path(app)
        try:
            raw = read_state_bytes(path)
            if self._written.get(os.fspath(path)) != _digest(raw):
                return {}
            snapshots = json.loads(raw).get("Snapshots")
            return {sid: facts["Record"] for sid, facts in snapshots.items()}
        except (OSError, StateError, ValueError, AttributeError, TypeError, KeyError):
            return {}

    def remove_app(self, app: UUID) -> None:
        """Uninstall: the app's state and every snapshot folder of it go."""
        for sid in sorted(self._on_disk.get(app, set())):
            self.remove_snapshot(app, sid)
        self._apps.pop(app, None)
        self._on_disk.pop(app, None)
        self._app_written.pop(app, None)
        self._written.pop(os.fspath(self._app_path(app)), None)
        durable_unlink(self._app_path(app))

    def save_snapshot(self, snapshot: SnapshotRecord) -> None:
        """The snapshot's folder; its facts go into its app's file at the app's next save
        (until then, or after a crash before it, the folder is read in full at start)."""
        folder = self.snapshots_dir / snapshot_folder_name(snapshot.id)
        files = {name: value.dump() for name, value in snapshot_files(snapshot).items()}
        self._facts.pop(snapshot.id, None)
        if folder.is_dir():
            for name, data in files.items():
                self._write_bytes(folder / name, data)
        else:
            self._build(folder, files)
        self._on_disk.setdefault(snapshot.app, set()).add(snapshot.id)
        stamp = _stamp(folder.name, None, self.snapshots_dir)
        if stamp is not None:
            digests = tuple(_digest(files[name]) for name in STAMPED_FILES)
            record = snapshot.model_dump_json().encode()
            self._facts[snapshot.id] = _Facts(snapshot.app, stamp, digests, record)

    def _build(self, folder: Path, files: dict[str, bytes]) -> None:
        """A new snapshot folder appears whole or not at all."""
        staging = folder.parent / f"{BUILDING}{folder.name}.{uuidlib.uuid4().hex[:8]}"
        ensure_dir(staging)
        try:
            for name, data in files.items():
                atomic_write(staging / name, data)
            staging.rename(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(folder.parent)
        for name, data in files.items():
            self._written[os.fspath(folder / name)] = _digest(data)

    def remove_snapshot(self, app: UUID, snapshot_id: str) -> None:
        folder = self.snapshots_dir / snapshot_folder_name(snapshot_id)
        self._on_disk.get(app, set()).discard(snapshot_id)
        self._facts.pop(snapshot_id, None)
        for name in SNAPSHOT_FILES:
            self._written.pop(os.fspath(folder / name), None)
        if not folder.exists():
            return
        doomed = folder.parent / f"{REMOVING}{folder.name}.{uuidlib.uuid4().hex[:8]}"
        folder.rename(doomed)
        fsync_dir(folder.parent)
        shutil.rmtree(doomed, ignore_errors=True)

    # ================================================================ volumes

    def _volume_path(self, key: str) -> Path:
        return self.volumes_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def save_volume(self, volume: VolumeRecord) -> None:
        self._write(
            self._volume_path(volume.key), VolumeState(schema_version=VolumeState.SCHEMA, volume=volume)
        )

    def remove_volume(self, key: str) -> None:
        path = self._volume_path(key)
        self._written.pop(os.fspath(path), None)
        durable_unlink(path)

    # ================================================================ intent journal

    def begin(self, kind: str, app: UUID, snapshot_id: str, details: dict[str, str]) -> str:
        intent = uuidlib.uuid4().hex
        body = Intent(
            schema_version=Intent.SCHEMA,
            kind=kind,
            app_instance_id=app,
            snapshot_id=snapshot_id,
            details=details,
            time=datetime.now(UTC),
        )
        atomic_write(self.journal_dir / f"{intent}.json", body.dump())
        return intent

    def commit(self, intent: str) -> None:
        durable_unlink(self.journal_dir / f"{intent}.json")

    def unfinished(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for path in self._files(self.journal_dir):
            read = self._read(path, Intent)
            if read is not None:
                item = read[0]
                out.append(
                    {
                        "intent": path.stem,
                        "kind": item.kind,
                        "app": str(item.app_instance_id),
                        "snapshot": item.snapshot_id,
                        "details": item.details,
                    }
                )
        return out

    # ================================================================ the previous layout

    def _adopt_legacy(self, old: legacy.LegacyState) -> None:
        """Write what evesnap 0.1 stored (``state/``) in this layout, then retire the old folder."""
        for record in old.apps.values():
            self.save_app(record)
            for snap in record.snapshots.values():
                self.save_snapshot(snap)
        for volume in old.volumes.values():
            self.save_volume(volume)
        if old.device is not None and not (self.root / "device.json").exists():
            self.save_device(old.device)
        for item in old.intents:
            body = Intent(schema_version=Intent.SCHEMA, **item)
            atomic_write(self.journal_dir / f"{uuidlib.uuid4().hex}.json", body.dump())
        legacy.retire(self.persist)
        self._apps.clear()
        self._on_disk.clear()
        self._written.clear()
        self._facts.clear()
        self._app_written.clear()


def snapshot_files(snapshot: SnapshotRecord) -> dict[str, StoredFile]:
    """The three files of a snapshot folder."""
    config = json.loads(snapshot.config_json)
    go = go_app_fields(config)
    return {
        APP_CONFIG: AppInstanceConfigFile(
            schema_version=AppInstanceConfigFile.SCHEMA,
            app_instance_id=snapshot.app,
            config_id=snapshot.config_id,
            config_version=snapshot.config_version,
            config=config,
            uuid_and_version=go.get("UUIDandVersion"),
            display_name=go.get("DisplayName"),
            volume_ref_config_list=go.get("VolumeRefConfigList"),
            activate=go.get("Activate"),
            restart_cmd=go.get("RestartCmd"),
            purge_cmd=go.get("PurgeCmd"),
            snapshot=go.get("Snapshot"),
        ),
        VOLUMES_STATUS: VolumesSnapshotStatus(
            schema_version=VolumesSnapshotStatus.SCHEMA,
            snapshot_id=snapshot.id,
            volume_snapshot_meta=eve_volume_meta(snapshot.volumes),
            app_uuid=snapshot.app,
            evesnap_volumes={k: VolumeSnapshotMeta(volume=v) for k, v in snapshot.volumes.items()},
            volume_keys=snapshot.volume_keys,
        ),
        SNAPSHOT_STATUS: SnapshotInstanceStatus(
            schema_version=SnapshotInstanceStatus.SCHEMA,
            snapshot=SnapshotDescription(
                snapshot_id=snapshot.id, snapshot_type=snapshot.type, display_name=snapshot.display_name
            ),
            app_instance_id=snapshot.app,
            config_version=StoredUUIDandVersion(uuid=snapshot.config_id, version=snapshot.config_version),
            state=snapshot.state,
            origin=snapshot.origin,
            time_triggered=snapshot.requested,
            time_created=snapshot.created,
            parent=snapshot.parent,
            error=snapshot.error,
            exports=snapshot.exports,
            consistency=snapshot.consistency,
            consistency_detail=snapshot.consistency_detail,
            live_snapshot_ms=snapshot.live_snapshot_ms,
        ),
    }


_SERIALS = itertools.count()


@dataclass
class _Facts:
    """What a snapshot folder held when evesnap last wrote or read it (`files.SnapshotFacts`)."""

    app: UUID
    stamp: tuple[int, ...]
    digests: tuple[str, ...]
    record: bytes | None
    """The record's JSON; None: as in the app's file when it was loaded."""
    serial: int = field(default_factory=lambda: next(_SERIALS))
    """Another for every change (new facts are a new object)."""
    model: SnapshotFacts | None = None
    """As the app's file holds them, built when it is first written."""


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _stamp(name: str, at: int | None, snapshots_dir: Path) -> tuple[int, ...] | None:
    """The snapshot folder `name`'s stamp (`files.SnapshotFacts.stamp`), looked up
    from the open folder `at` (or by path); None if it is not a real folder holding
    regular files (a link, a FIFO, one missing): such a folder is read in full."""
    where = name if at is not None else f"{os.fspath(snapshots_dir)}/{name}"
    try:
        info = os.stat(where, dir_fd=at, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            return None
        out = [info.st_ino, info.st_mtime_ns, info.st_ctime_ns]
        for file in STAMPED_FILES:
            info = os.stat(f"{where}/{file}", dir_fd=at, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                return None
            out += (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    except (OSError, ValueError):
        return None
    return tuple(out)


@contextlib.contextmanager
def _folder_fd(folder: str) -> Iterator[int | None]:
    """The folder open (a descriptor to look names up from), or None if it cannot be."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the state is read, and none walking it just after.

    Reading builds hundreds of thousands of objects, none of them garbage and
    none in a cycle; as the heap grows the collector would walk all of it again
    and again (at 1,000 apps, more time than the reading itself). Whatever
    garbage there is waits for a later collection.

    At the end the objects are moved straight to the oldest generation
    (``gc.freeze()`` then ``gc.unfreeze()``): otherwise the young-generation
    passes after the load walk every one of them, then count them as new in the
    oldest generation and so start a full collection (at 1,000 apps, ~0.4 s of
    a ~1.1 s restart). They stay collectable: nothing is left frozen, a cycle
    among them is freed by the next full collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def _config_json(config: dict[str, Any]) -> str:
    """A snapshot's stored config as the record keeps it: compact JSON text."""
    try:
        return pydantic_core.to_json(config, inf_nan_mode="constants").decode()
    except (pydantic_core.PydanticSerializationError, ValueError):
        return json.dumps(config, separators=(",", ":"), ensure_ascii=False)


def _slurp(path: str) -> bytes:
    """A state file's bytes, read defensively (only a regular file, at most
    MAX_STATE_BYTES: `stored.read_state_bytes`)."""
    return read_state_bytes(path)


def _slurp_stored(path: str) -> bytes:
    try:
        return _slurp(path)
    except FileNotFoundError:
        raise StateError(path, "stored data missing") from None
    except NotADirectoryError:
        raise StateError(path, "stored data missing (its folder is not a folder)") from None
    except OSError as exc:
        raise StateError(path, f"stored data unreadable ({exc.strerror})") from None


def _remove_tmp(folder: str) -> None:
    """Atomic writes cut before their rename (``.<name>.<random>.tmp``) in `folder`."""
    try:
        doomed = [name for name in os.listdir(folder) if _is_tmp(name)]  # noqa: PTH208 (no Path per entry)
    except OSError:
        return
    for name in doomed:
        Path(folder, name).unlink(missing_ok=True)


def _is_tmp(name: str) -> bool:
    """The names ``.*.tmp`` matches."""
    return name.startswith(".") and name.endswith(".tmp") and len(name) >= len("..tmp")


def _app_part(raw: bytes, app: UUID) -> str | None:
    """The app record's JSON in an app file that `AppState.dump` wrote (its ``App``,
    between the ids and the facts), without dumping the record again; None for a
    file laid out otherwise. A part cut wrong (a ``"Snapshots"`` key inside the
    record's own configs) never equals a record's whole dump: it only costs one
    rewrite of the file."""
    head = b'{"SchemaVersion":%d,"AppInstanceID":"%s","App":' % (AppState.SCHEMA, str(app).encode())
    if not raw.startswith(head):
        return None
    end = raw.find(b',"Snapshots":{', len(head))
    return raw[len(head) : end].decode(errors="replace") if end > 0 else None


def _uuid_or_none(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _owner_of(snapshot_id: str, apps: dict[UUID, AppRecord]) -> UUID | None:
    """The app whose own record names `snapshot_id` (its controller list, current
    snapshot or rollback), when the snapshot's folder no longer says."""
    for record in apps.values():
        config = record.config
        listed = config.snapshot.snapshots if config is not None and config.snapshot else []
        if snapshot_id in {str(d.id) for d in listed} or snapshot_id in (
            record.current_snapshot,
            record.rollback_target,
        ):
            return record.uuid
    return None


def _app_of(folder: Path) -> UUID | None:
    """The app a damaged snapshot folder belonged to, from whichever file still says."""
    for name, key in (
        (SNAPSHOT_STATUS, "AppInstanceID"),
        (VOLUMES_STATUS, "AppUUID"),
        (APP_CONFIG, "AppInstanceID"),
    ):
        try:
            raw = read_state_bytes(folder / name)
            if too_deep(raw):
                continue
            value = json.loads(raw).get(key)
            return UUID(str(value))
        except (OSError, StateError, ValueError, AttributeError, TypeError, RecursionError):
            continue
    return None

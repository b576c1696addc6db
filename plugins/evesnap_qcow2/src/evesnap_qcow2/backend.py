"""The qcow2 backend: internal snapshots, offline with qemu-img and live over QMP.

Volumes are ``<persist>/vault/volumes/<uuid>#<generation>.qcow2``, as in the
reference. Every operation on an image holds a per-image ``flock`` (concurrent
qemu-img calls corrupt images); an image a running QEMU holds (the handle has
an ``attachment``) is only touched through QMP, never by qemu-img.

Offline snapshot create and delete go to the process's resident
qemu-storage-daemon (:mod:`evesnap_qcow2.daemon`: no process start, no image
open per call; an app's volumes in one transaction), or to qemu-img when it
cannot serve (``EVESNAP_QCOW2_DAEMON=off``, not installed, busy with another
operation, or died in this one). Rollback is always ``qemu-img snapshot -a``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    BackendInfo,
    Capability,
    ContentSource,
    CorruptVolume,
    EvesnapError,
    FormatError,
    ReadOnlyExport,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotInUse,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeLocked,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
    toolkit,
)
from evesnap_core.toolkit import crashpoint, ensure_dir, fsync_dir, publish, temp_file
from evesnap_qcow2 import daemon, exports, header, live, naming, qemu_img, sidecar
from evesnap_qcow2.sidecar import ExportRecord, TagRecord

NAME = "qcow2"
PLUGIN_API_VERSION = 1
CRASH_POINTS = (
    "qcow2.snapshot.sidecar_recorded",
    "qcow2.snapshot.tag_made",
    "qcow2.snapshot.live_done",
    "qcow2.rollback.applied",
    "qcow2.rollback.recorded",
    "qcow2.delete.tag_deleted",
    "qcow2.delete.recorded",
    "qcow2.daemon.command",
)
"""The step boundaries inside this backend (``evesnap_core.crashpoints``):

- ``snapshot.sidecar_recorded``: every image's sidecar names the new tag and
  none has it yet (offline and live);
- ``snapshot.tag_made``: offline, once per image after its tag is made: after
  each ``qemu-img snapshot -c`` (with two images, the first has its tag and the
  second not), or after the daemon's one transaction (every tag made);
- ``snapshot.live_done``: after the QMP transaction, every tag made;
- ``rollback.applied``: after ``qemu-img snapshot -a``, the sidecar's new
  ``current`` written or not (it is flushed while qemu-img runs);
- ``rollback.recorded``: both done, the lock still held;
- ``delete.tag_deleted``: after ``qemu-img snapshot -d`` (or its QMP
  command, to the app's QEMU or to the storage daemon), the sidecar written or not;
- ``delete.recorded``: both done;
- ``daemon.command``: offline through the storage daemon, the images open in
  it and its snapshot (or delete) command about to go: the sidecar names the
  new tag, no image has it (:mod:`evesnap_qcow2.daemon`).
"""
CAPABILITIES = frozenset(
    {
        Capability.CREATE_VOLUME,
        Capability.POPULATE_VOLUME,
        Capability.SNAPSHOT,
        Capability.LIVE_SNAPSHOT,
        Capability.ATOMIC_GROUP,
        Capability.ROLLBACK_ANY,
        Capability.CLONE,
        Capability.READ_ONLY,
        Capability.LIVE_DELETE,
    }
)


def _now() -> datetime:
    return datetime.now(UTC)


def _forget(state: sidecar.Sidecar, tag: str, snapshot_id: str) -> sidecar.Sidecar:
    """`state` without snapshot `tag`: its children and `current` move up to its
    parent, its exports go. A new object; `state` stays as it was, to restore."""
    lineage = {r.snapshot_id: r.parent for t, r in state.tags.items()}
    if tag not in state.tags:
        lineage[snapshot_id] = None
    parents, current = toolkit.after_delete(lineage, state.current, snapshot_id)
    tags = {
        t: r.model_copy(update={"parent": parents[r.snapshot_id]}) for t, r in state.tags.items() if t != tag
    }
    exports = {k: e for k, e in state.exports.items() if e.tag != tag}
    return state.model_copy(update={"tags": tags, "current": current, "exports": exports})


class Qcow2Backend:
    def __init__(self, context: BackendContext) -> None:
        self.volumes_dir = context.persist_dir / "vault" / "volumes"
        self.log = context.logger
        off = context.option("daemon", "on").lower() in ("off", "0", "no", "false")
        self.daemon: daemon.StorageDaemon | None = None if off else daemon.shared()
        toolkit.sweep(self.volumes_dir)  # what a killed operation left

    # ================================================================ plumbing

    def _path(self, uuid: Any, generation: int) -> Path:
        return self.volumes_dir / f"{uuid}#{generation}.qcow2"

    def _image(self, volume: VolumeHandle) -> Path:
        """The image of a handle: computed from uuid and generation, never taken
        from the stored location, which could have been tampered with."""
        return self._path(volume.uuid, volume.generation)

    def _handle(self, spec: VolumeSpec) -> VolumeHandle:
        return toolkit.handle_for(spec, NAME, str(self._path(spec.uuid, spec.generation)), "qcow2")

    @staticmethod
    def _locked(image: Path) -> contextlib.AbstractContextManager[None]:
        """The image's exclusive lock (the toolkit's per-volume lock), for every
        operation, offline and live: concurrent qemu-img calls corrupt an image."""
        toolkit.confined(image)  # a link in place of an image would make qemu-img write elsewhere
        toolkit.confined(sidecar.sidecar_path(image), final=False)
        lock = image.with_name(image.name + ".lock")
        gone = lambda: not image.exists() and not sidecar.sidecar_path(image).exists()  # noqa: E731
        return toolkit.volume_lock(lock, image.name, gone=gone)

    @staticmethod
    def _require_image(image: Path) -> None:
        if not image.exists():
            raise VolumeNotFound(image.name, f"{image} does not exist")

    @staticmethod
    def _find(image: Path, tag: str) -> header.TableEntry | None:
        return next((e for e in header.read_snapshot_table(image) if e.name == tag), None)

    def _info(
        self, volume: VolumeHandle, entry: header.TableEntry, record: TagRecord | None, snapshot_id: str
    ) -> SnapshotInfo:
        created = datetime.fromtimestamp(entry.date_sec + entry.date_nsec / 1e9, UTC)
        return SnapshotInfo(
            snapshot_id=snapshot_id,
            name=entry.name,
            volume=volume.uuid,
            generation=volume.generation,
            created=created,
            parent=record.parent if record else None,
        )

    # ================================================================ description

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            plugin_api_version=PLUGIN_API_VERSION,
            capabilities=CAPABILITIES,
            formats=("qcow2",),
            snapshot_space="copy_on_write",
            description="qcow2 images: internal snapshots with qemu-img, live over QMP",
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if volume.format == "qcow2" and not volume.purgeable else None

    # ================================================================ volumes

    @hookimpl
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        if volume.format != "qcow2":
            raise FormatError(f"the qcow2 backend makes qcow2 volumes, not {volume.format}")
        image = self._path(volume.uuid, volume.generation)
        with self._locked(image):
            if image.exists():
                size = int(qemu_img.info(image)["virtual-size"])
                if size != volume.size_bytes:
                    raise AlreadyExists(
                        f"volume {volume.key} exists with {size} bytes, not {volume.size_bytes}"
                    )
                return self._handle(volume)
            with temp_file(image) as tmp:
                qemu_img.create(tmp, volume.size_bytes)
                tmp.chmod(0o600)
                publish(tmp, image)
        return self._handle(volume)

    @hookimpl
    def evesnap_populate_volume(
        self, volume: VolumeSpec, source: ContentSource, progress: Any
    ) -> VolumeHandle:
        if volume.format != "qcow2":
            raise FormatError(f"the qcow2 backend makes qcow2 volumes, not {volume.format}")
        image = self._path(volume.uuid, volume.generation)
        with self._locked(image):
            if image.exists():
                return self._handle(volume)
            content = toolkit.inspect_content(source)  # refuses images naming other files
            opts = toolkit.content.image_opts(content.path, content.format)
            needed = qemu_img.measure(opts, source.path)
            toolkit.require_space(image.parent, needed)
            self._copy_into(["--image-opts", opts], image, volume.size_bytes, needed)
            if progress is not None:
                progress(needed, needed)
        return self._handle(volume)

    @staticmethod
    def _copy_into(source: list[str], image: Path, size: int, needed: int) -> None:
        """``qemu-img convert`` into a temporary beside `image`, grown to `size`,
        published whole; a full disk is NoSpace, a failure leaves nothing."""
        with temp_file(image) as tmp, toolkit.enospc_as_nospace(image.parent, needed):
            qemu_img.convert(source, tmp)
            if size > int(qemu_img.info(tmp)["virtual-size"]):
                qemu_img.resize(tmp, size)
            tmp.chmod(0o600)
            publish(tmp, image)

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        if volume.attachment is not None:
            raise VolumeLocked(volume.key, "a running VM holds it")
        image = self._image(volume)
        with self._locked(image):
            if image.exists():
                # a running QEMU the handle does not name still holds its lock:
                # unlinking would pull the disk from under a live app
                with contextlib.suppress(FormatError):  # a damaged image can still go
                    qemu_img.info(image)
            state = sidecar.load(image)
            for record in state.exports.values():
                exports.stop(record.pid, Path(record.socket))
            with contextlib.suppress(FileNotFoundError):
                image.unlink()
            sidecar.remove(image)
            fsync_dir(image.parent)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        """From the image's header and its size on disk (no qemu-img: every status
        asks this of every volume, beside a running VM too)."""
        image = self._image(volume)
        self._require_image(image)
        sizes = header.read_sizes(image)
        problems = [
            p
            for p, on in (("refcounts need repair (dirty)", sizes.dirty), ("marked corrupt", sizes.corrupt))
            if on
        ]
        return VolumeDetails(
            handle=volume,
            format="qcow2",
            virtual_size=sizes.virtual_size,
            actual_size=sizes.allocated,
            dirty=sizes.dirty,
            corrupt=sizes.corrupt,
            problems=tuple(problems),
        )

    # ================================================================ snapshots

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str) -> SnapshotInfo:
        return self.evesnap_snapshot_group([volume], snapshot_id)[0]

    @hookimpl
    def evesnap_snapshot_group(self, volumes: Sequence[VolumeHandle], snapshot_id: str) -> list[SnapshotInfo]:
        """All volumes' snapshots or none. Held by one VM: one QMP transaction, which
        is atomic. Offline: every image locked, made one by one, undone on failure
        (no VM holds them, so nothing writes in between)."""
        images = {v.key: self._image(v) for v in volumes}
        with contextlib.ExitStack() as stack:
            for key in sorted(images):
                stack.enter_context(self._locked(images[key]))
            todo: list[tuple[VolumeHandle, str]] = []
            previous: dict[str, str | None] = {}  # each image's `current` before this snapshot
            states: dict[str, sidecar.Sidecar] = {}
            for volume in volumes:
                image = images[volume.key]
                self._require_image(image)
                tag = naming.tag(volume.uuid, volume.generation, snapshot_id)
                state = states[volume.key] = self._settled(image, sidecar.load(image))
                if self._find(image, tag) is not None:
                    if state.readable and tag not in state.tags:
                        raise AlreadyExists(f"{image.name} has a snapshot {tag} that evesnap did not make")
                else:
                    previous[volume.key] = state.current
                    state.tags[tag] = TagRecord(snapshot_id=snapshot_id, parent=state.current, created=_now())
                    state.current = snapshot_id
                    sidecar.save(image, state)  # recorded before it exists: a crash leaves no unknown tag
                    todo.append((volume, tag))
            if todo:
                crashpoint("qcow2.snapshot.sidecar_recorded")
            try:
                self._create_all(todo, images)
            except BaseException:
                for volume, tag in todo:  # a tag that landed anyway (e.g. a timeout) stays known
                    image = images[volume.key]
                    if self._find(image, tag) is None:
                        state = sidecar.load(image)
                        state.tags.pop(tag, None)
                        state.current = previous[volume.key]
                        sidecar.save(image, state)
                raise
            infos = []
            for volume in volumes:
                image = images[volume.key]
                tag = naming.tag(volume.uuid, volume.generation, snapshot_id)
                entry = self._find(image, tag)
                if entry is None:
                    raise CorruptVolume(f"snapshot {tag} missing from {image} right after it was made")
                infos.append(self._info(volume, entry, states[volume.key].tags.get(tag), snapshot_id))
            return infos

    def _settled(self, image: Path, state: sidecar.Sidecar) -> sidecar.Sidecar:
        """`state` without the tags the image does not have (under the image's lock).

        A create records its tag before making it; a crash in between (or a
        failure whose cleanup died with the process) leaves a record of a tag
        that does not exist, and `current` naming it. Such a record is dropped
        as if the snapshot had been deleted, so the next snapshot's parent is a
        real one (never itself, on a retry of the same id)."""
        have = {e.name for e in header.read_snapshot_table(image)}
        stale = [(t, r.snapshot_id) for t, r in state.tags.items() if t not in have]
        if not stale:
            return state
        for tag, snapshot_id in stale:
            state = _forget(state, tag, snapshot_id)
        sidecar.save(image, state)
        self.log.info("%s: dropped the record of %d snapshot(s) never made", image.name, len(stale))
        return state

    def _create_all(self, todo: list[tuple[VolumeHandle, str]], images: dict[str, Path]) -> None:
        attached = [(v, t) for v, t in todo if v.attachment is not None]
        offline = [(v, t) for v, t in todo if v.attachment is None]
        made: list[tuple[VolumeHandle, str]] = []
        repair: list[Path] = []
        try:
            if attached:
                live.snapshot_group(attached)
                made.extend(attached)
                crashpoint("qcow2.snapshot.live_done")
            if offline:
                landed, repair = self._create_through_daemon(offline, images)
                made.extend(landed)
                offline = [item for item in offline if item not in landed]
                for _ in landed:
                    crashpoint("qcow2.snapshot.tag_made")
            for volume, tag in offline:
                try:
                    qemu_img.snapshot("-c", images[volume.key], tag)
                except EvesnapError:
                    self._give_back(images[volume.key])  # a full disk can cut it short: no leak left
                    raise
                made.append((volume, tag))
                crashpoint("qcow2.snapshot.tag_made")
            for image in repair:
                self._give_back(image)
        except BaseException:
            for volume, tag in reversed(made):
                with contextlib.suppress(EvesnapError):
                    self._delete_tag(volume, images[volume.key], tag)
                if volume.attachment is None:
                    self._give_back(images[volume.key])
            raise

    def _create_through_daemon(
        self, todo: list[tuple[VolumeHandle, str]], images: dict[str, Path]
    ) -> tuple[list[tuple[VolumeHandle, str]], list[Path]]:
        """The offline snapshots the storage daemon made: all of `todo` (one
        transaction), none (it cannot serve: qemu-img makes them), or, when it
        died in the transaction, those the images show (qemu-img makes the
        rest); and the images whose leaked clusters to give back once qemu-img
        is done with them (a kill mid-write leaves some, and a later write can
        meet more: a repair before qemu-img's own step is not enough)."""
        if self.daemon is None:
            return [], []
        try:
            made = self.daemon.snapshot([(images[v.key], t) for v, t in todo])
            return (list(todo) if made else []), []
        except daemon.DaemonGone as exc:
            self.log.warning("%s; qemu-img takes over", exc)
            landed = [(v, t) for v, t in todo if self._find(images[v.key], t) is not None]
            return landed, [images[v.key] for v, _ in todo]
        except EvesnapError:
            for volume, _ in todo:
                self._give_back(images[volume.key])  # a full disk can cut it short: no leak left
            raise

    def _give_back(self, image: Path) -> None:
        """Reclaim clusters a failed qemu-img write left allocated (best effort: a
        leak wastes space, it never harms data)."""
        try:
            qemu_img.repair_leaks(image)
        except EvesnapError as exc:
            self.log.warning("%s: leaked clusters not reclaimed: %s", image.name, exc)

    def _delete_tag(self, volume: VolumeHandle, image: Path, tag: str) -> None:
        if volume.attachment is not None:
            live.delete(volume, tag)
            return
        if self.daemon is not None:
            try:
                if self.daemon.delete(image, tag):
                    return
            except daemon.DaemonGone as exc:
                if self._find(image, tag) is not None:
                    self.log.warning("%s; qemu-img takes over", exc)
                    qemu_img.snapshot("-d", image, tag)
                self._give_back(image)  # what the kill (or qemu-img after it) left allocated, unused
                return
        qemu_img.snapshot("-d", image, tag)

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        image = self._image(volume)
        self._require_image(image)
        head = naming.prefix(volume.uuid, volume.generation)
        state = sidecar.load(image)
        entries = [e for e in header.read_snapshot_table(image) if e.name.startswith(head)]
        entries.sort(key=lambda e: (e.date_sec, e.date_nsec, int(e.id) if e.id.isdigit() else 0))
        out = []
        for entry in entries:
            record = state.tags.get(entry.name)
            sid = (
                record.snapshot_id
                if record
                else naming.id_from_tag(entry.name, volume.uuid, volume.generation)
            )
            out.append(self._info(volume, entry, record, sid or entry.name))
        return out

    def _tag_for(self, image: Path, volume: VolumeHandle, snapshot_id: str) -> str:
        """The tag of `snapshot_id`: evesnap's own name of it, or, for a tag of this
        volume that evesnap did not make (EVE's ``<uuid>#<gen>-snapshot-<time>``),
        the tag itself, which is the id evesnap_list_snapshots gives it."""
        tag = naming.tag(volume.uuid, volume.generation, snapshot_id)
        if (
            snapshot_id != tag
            and snapshot_id.startswith(naming.prefix(volume.uuid, volume.generation))
            and self._find(image, tag) is None
            and self._find(image, snapshot_id) is not None
        ):
            return snapshot_id
        return tag

    def _tag_of(self, volume: VolumeHandle, snapshot_id: str) -> tuple[Path, str]:
        image = self._image(volume)
        self._require_image(image)
        tag = self._tag_for(image, volume, snapshot_id)
        if self._find(image, tag) is None:
            raise SnapshotNotFound(snapshot_id, volume.key)
        return image, tag

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        self._tag_of(volume, snapshot_id)
        held = volume.attachment is not None
        return RollbackCheck(
            possible=not held, needs_stop=held, reason="the VM holding the volume must stop" if held else ""
        )

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str) -> RollbackResult:
        if volume.attachment is not None:
            raise VolumeLocked(volume.key, "rollback needs the app stopped")
        image = self._image(volume)
        with self._locked(image):
            image, tag = self._tag_of(volume, snapshot_id)
            state = sidecar.load(image)
            after = state.model_copy(update={"current": snapshot_id})
            sidecar.save_during(
                image, state, after, lambda: qemu_img.snapshot("-a", image, tag), "qcow2.rollback.applied"
            )
            crashpoint("qcow2.rollback.recorded")
        return RollbackResult(snapshot_id=snapshot_id, live_generation=volume.generation)

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        image = self._image(volume)
        if not image.exists():
            return
        with self._locked(image):
            tag = self._tag_for(image, volume, snapshot_id)
            state = sidecar.load(image)
            users = [k for k, e in state.exports.items() if e.tag == tag and exports.alive(e.pid)]
            if users:
                raise SnapshotInUse(snapshot_id, [f"read-only export {u}" for u in users])
            after = _forget(state, tag, snapshot_id)
            if self._find(image, tag) is None:
                if after != state:  # an unknown id changes nothing, not even the sidecar
                    sidecar.save(image, after)
            else:
                sidecar.save_during(
                    image,
                    state,
                    after,
                    lambda: self._delete_tag(volume, image, tag),
                    "qcow2.delete.tag_deleted",
                )
            crashpoint("qcow2.delete.recorded")

    # ================================================================ clones and exports

    @hookimpl
    def evesnap_clone_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, target: VolumeSpec, progress: Any
    ) -> VolumeHandle:
        if target.format != "qcow2":
            raise FormatError(f"the qcow2 backend clones into qcow2 volumes, not {target.format}")
        image = self._image(volume)
        clone = self._path(target.uuid, target.generation)
        if clone.exists():
            raise AlreadyExists(f"volume {target.key} exists already")
        with self._locked(image):
            image, tag = self._tag_of(volume, snapshot_id)
            opts = qemu_img.image_opts(image)
            needed = qemu_img.measure(opts, image, tag, force_share=volume.attachment is not None)
            toolkit.require_space(clone.parent, needed)
            source = ["-l", f"snapshot.name={tag}", "--image-opts", opts]
            if volume.attachment is not None:
                source.insert(0, "-U")
            self._copy_into(source, clone, target.size_bytes, needed)
        if progress is not None:
            progress(needed, needed)
        return self._handle(target.model_copy(update={"backend": NAME}))

    @hookimpl
    def evesnap_open_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, runtime_dir: str
    ) -> ReadOnlyExport:
        image = self._image(volume)
        with self._locked(image):
            image, tag = self._tag_of(volume, snapshot_id)
            folder = ensure_dir(Path(runtime_dir))
            sock = exports.socket_path(folder, image, tag)
            state = sidecar.load(image)
            record = state.exports.get(sock.name)
            if record is None or not exports.alive(record.pid):
                pid = exports.start(image, tag, sock)
                state.exports[sock.name] = ExportRecord(tag=tag, pid=pid, socket=str(sock))
                sidecar.save(image, state)
        return ReadOnlyExport(
            export_id=sock.name, kind="nbd", path=sock, format="raw", uri=f"nbd+unix:///?socket={sock}"
        )

    @hookimpl
    def evesnap_close_snapshot(self, volume: VolumeHandle, export: ReadOnlyExport) -> None:
        image = self._image(volume)
        if not image.exists():
            exports.stop(0, export.path)
            return
        with self._locked(image):
            state = sidecar.load(image)
            record = state.exports.pop(export.export_id, None)
            if record is not None:
                exports.stop(record.pid, Path(record.socket))
                sidecar.save(image, state)

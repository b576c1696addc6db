"""The configurable in-memory backend and an instant app runtime, for testing and
measuring the orchestrator alone (no storage, no VMs). Never a substitute for a
real backend's tests.

One backend class, configured (:class:`MemoryConfig`) into what a test needs:
its name and formats, the capabilities it declares (the live ones too, and
rollback of any snapshot or of the latest only), which volumes it claims, and
whether its snapshots are whole copies that outlive ``destroy_volume`` and keep
a retiring generation whole (as evesnap-purgeable does). Its state lives in a
:class:`~evesnap_core.testing.memory_disk.MemoryDisk` that every backend object
built around it shares: tests read and change the bytes there, and inject
failures per operation. It keeps the hook specifications: the conformance suite
runs against it (``evesnap_core.testing.conformance.memory``) and skips only the
cases that need a new process or a real QEMU, naming the requirement.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from evesnap_core import (
    AlreadyExists,
    BackendContext,
    BackendInfo,
    Capability,
    ContentSource,
    FormatError,
    LiveAttachment,
    RollbackBlocked,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    SnapshotNotFound,
    VolumeDetails,
    VolumeHandle,
    VolumeNotFound,
    VolumeSpec,
    hookimpl,
    toolkit,
)
from evesnap_core.runtime_hookspecs import AppRunState, AppSpec, runtime_hookimpl
from evesnap_core.testing.memory_disk import MemoryDisk, VolumeMeta

SUPPORTED = frozenset(Capability) - {Capability.READ_ONLY}
"""What the memory backend can declare (it has no read-only exports)."""
DEFAULT_CAPABILITIES = frozenset(
    {
        Capability.CREATE_VOLUME,
        Capability.POPULATE_VOLUME,
        Capability.SNAPSHOT,
        Capability.LIVE_SNAPSHOT,
        Capability.LIVE_DELETE,
        Capability.ROLLBACK_ANY,
    }
)


@functools.lru_cache(maxsize=16)
def blank(size: int) -> bytes:
    """`size` zero bytes, one object per size: bytes are immutable, so every blank
    volume of that size shares it (thousands of blank volumes cost one)."""
    return bytes(size)


@dataclass(frozen=True)
class MemoryConfig:
    """What one in-memory backend is."""

    name: str = "memory"
    formats: tuple[str, ...] = ("qcow2", "raw")
    """Declared, and claimed: a volume of another format is not this backend's."""
    capabilities: frozenset[Capability] = DEFAULT_CAPABILITIES
    """Declared; rollback_any rolls back to any snapshot keeping newer ones,
    rollback_latest alone only past newer ones it may destroy."""
    purgeable: bool | None = None
    """Claims only purgeable volumes (True), only others (False), or both (None)."""
    retain_after_destroy: bool = False
    """Snapshots are whole copies (``snapshot_space`` full_copy): they survive
    destroy_volume, and a retiring volume is kept whole as its snapshot."""

    def __post_init__(self) -> None:
        unsupported = self.capabilities - SUPPORTED
        if unsupported:
            raise ValueError(f"the memory backend cannot declare {sorted(c.value for c in unsupported)}")

    def claims(self, volume: VolumeSpec) -> bool:
        return volume.format in self.formats and self.purgeable in (None, volume.purgeable)


@dataclass(eq=False)
class MemoryBackend:
    """A backend whose volumes and snapshots are bytes in a shared MemoryDisk."""

    context: BackendContext | None = None
    config: MemoryConfig = field(default_factory=MemoryConfig)
    disk: MemoryDisk = field(default_factory=MemoryDisk)

    @classmethod
    def factory(cls, config: MemoryConfig, disk: MemoryDisk) -> Callable[[BackendContext], MemoryBackend]:
        """What ``load_backends(extra=[(config.name, ...)])`` takes: every object it
        builds (each load, as after a restart) works on the same disk."""
        return lambda context: cls(context, config, disk)

    @property
    def name(self) -> str:
        return self.config.name

    def _has(self, capability: Capability) -> bool:
        return capability in self.config.capabilities

    # ------------------------------------------------------------ describing

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            plugin_api_version=1,
            capabilities=self.config.capabilities,
            formats=self.config.formats,
            snapshot_space="full_copy" if self.config.retain_after_destroy else "copy_on_write",
            description="in-memory volumes for tests (evesnap_core.testing.memory)",
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if self.config.claims(volume) else None

    # ------------------------------------------------------------ volumes

    def _handle(self, volume: VolumeSpec) -> VolumeHandle:
        return VolumeHandle(
            uuid=volume.uuid,
            generation=volume.generation,
            backend=self.name,
            format=volume.format,
            location=f"memory:{volume.key}",
        )

    def _existing(self, volume: VolumeSpec) -> VolumeHandle | None:
        """The volume when it exists as asked; AlreadyExists when it differs."""
        meta = self.disk.meta.get(volume.key)
        if volume.key not in self.disk.volumes or meta is None:
            return None
        if meta != VolumeMeta(volume.format, volume.size_bytes):
            raise AlreadyExists(
                f"volume {volume.key} exists as {meta}, asked for {volume.format}, {volume.size_bytes} bytes"
            )
        return self._handle(volume)

    def _made(self, volume: VolumeSpec, data: bytes) -> VolumeHandle:
        self.disk.volumes[volume.key] = data
        self.disk.meta[volume.key] = VolumeMeta(volume.format, volume.size_bytes)
        self.disk.heads.setdefault(volume.key, None)
        return self._handle(volume)

    @hookimpl
    def evesnap_create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        with self.disk.lock:
            self.disk.check("create_volume", volume.key)
            existing = self._existing(volume)
            if existing is not None:
                return existing
            return self._made(volume, blank(volume.size_bytes))  # thin: takes no space yet

    @hookimpl
    def evesnap_populate_volume(self, volume: VolumeSpec, source: ContentSource) -> VolumeHandle:
        with self.disk.lock:
            self.disk.check("populate_volume", volume.key)
            existing = self._existing(volume)
            if existing is not None:
                return existing
            return self._made(volume, self._content(source, volume.size_bytes))

    def _content(self, source: ContentSource, size: int) -> bytes:
        """The raw bytes of a content image (at least `size`), space checked first;
        a qcow2 image is inspected (nothing naming another file) and converted."""
        if not source.path.is_file():
            raise FormatError(f"content image {source.path} is not a regular file")
        if source.format == "raw":
            self.disk.require(max(size, source.path.stat().st_size))
            data = source.path.read_bytes()
        else:
            image = toolkit.inspect_content(source)
            self.disk.require(max(size, image.virtual_size))
            with tempfile.TemporaryDirectory(prefix="evesnap-memory-") as tmp:
                target = Path(tmp) / "content.raw"
                toolkit.write_content(image, target, 0)
                data = target.read_bytes()
        return data.ljust(size, b"\0")

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        with self.disk.lock:
            self.disk.check("destroy_volume", volume.key)
            self.disk.volumes.pop(volume.key, None)
            if not self.config.retain_after_destroy:
                for sid in self.disk.snapshot_ids(volume.key):
                    self._drop(volume.key, sid)
            self.disk.heads.pop(volume.key, None)
            self.disk.forget_if_empty(volume.key)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        with self.disk.lock:
            self.disk.check("volume_details", volume.key)
            data = self._bytes(volume)
            return VolumeDetails(
                handle=volume, format=volume.format, virtual_size=len(data), actual_size=len(data)
            )

    def _bytes(self, volume: VolumeHandle) -> bytes:
        try:
            return self.disk.volumes[volume.key]
        except KeyError:
            raise VolumeNotFound(volume.key) from None

    # ------------------------------------------------------------ snapshots

    @hookimpl
    def evesnap_snapshot_volume(self, volume: VolumeHandle, snapshot_id: str, retiring: bool) -> SnapshotInfo:
        with self.disk.lock:
            self.disk.check("snapshot", volume.key)
            return self._snapshot(volume, snapshot_id, retiring)

    def _snapshot(self, volume: VolumeHandle, snapshot_id: str, retiring: bool = False) -> SnapshotInfo:
        known = self.disk.infos.get((volume.key, snapshot_id))
        if known is not None:
            return known
        data = self._bytes(volume)
        if self.config.retain_after_destroy and retiring:
            del self.disk.volumes[volume.key]  # the retiring generation becomes the snapshot
        elif self.config.retain_after_destroy:
            self.disk.require(len(data))
            data = bytes(bytearray(data))  # a whole copy
        info = SnapshotInfo(
            snapshot_id=snapshot_id,
            name=f"{volume.key}@{toolkit.safe_name(snapshot_id)}",
            volume=volume.uuid,
            generation=volume.generation,
            created=datetime.now(UTC),
            parent=self.disk.heads.get(volume.key),
            size_bytes=len(data) if self.config.retain_after_destroy else 0,
        )
        self.disk.snapshots[(volume.key, snapshot_id)] = data
        self.disk.infos[(volume.key, snapshot_id)] = info
        self.disk.heads[volume.key] = snapshot_id
        return info

    @hookimpl
    def evesnap_snapshot_group(self, volumes: Sequence[VolumeHandle], snapshot_id: str) -> list[SnapshotInfo]:
        with self.disk.lock:
            for volume in volumes:  # every check first: all or nothing
                self.disk.check("snapshot_group", volume.key)
                self.disk.check("snapshot", volume.key)
                self._bytes(volume)
            return [self._snapshot(volume, snapshot_id) for volume in volumes]

    @hookimpl
    def evesnap_list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        with self.disk.lock:
            self.disk.check("list_snapshots", volume.key)
            infos = [self.disk.infos[(volume.key, sid)] for sid in self.disk.snapshot_ids(volume.key)]
            return toolkit.parents_first(infos, lambda i: i.snapshot_id, lambda i: i.parent)

    def _drop(self, key: str, snapshot_id: str) -> None:
        """Forget one snapshot; its children and the head take its parent."""
        parents = {sid: self.disk.infos[(key, sid)].parent for sid in self.disk.snapshot_ids(key)}
        kept, head = toolkit.after_delete(parents, self.disk.heads.get(key), snapshot_id)
        del self.disk.snapshots[(key, snapshot_id)], self.disk.infos[(key, snapshot_id)]
        for sid, parent in kept.items():
            info = self.disk.infos[(key, sid)]
            if info.parent != parent:
                self.disk.infos[(key, sid)] = info.model_copy(update={"parent": parent})
        if key in self.disk.heads:
            self.disk.heads[key] = head

    @hookimpl
    def evesnap_delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        with self.disk.lock:
            self.disk.check("delete_snapshot", volume.key)
            if (volume.key, snapshot_id) in self.disk.infos:
                self._drop(volume.key, snapshot_id)
            self.disk.forget_if_empty(volume.key)

    # ------------------------------------------------------------ rollback, clone

    def _newer(self, key: str, snapshot_id: str) -> list[str]:
        """The snapshots a rollback_latest rollback to `snapshot_id` destroys."""
        if (key, snapshot_id) not in self.disk.infos:
            raise SnapshotNotFound(snapshot_id, key)
        if self._has(Capability.ROLLBACK_ANY):
            return []
        order = self.disk.snapshot_ids(key)
        return order[order.index(snapshot_id) + 1 :]

    @hookimpl
    def evesnap_rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        with self.disk.lock:
            self.disk.check("rollback_check", volume.key)
            newer = self._newer(volume.key, snapshot_id)
            return RollbackCheck(possible=not newer, blockers=tuple(newer))

    @hookimpl
    def evesnap_rollback(self, volume: VolumeHandle, snapshot_id: str, destroy_newer: bool) -> RollbackResult:
        with self.disk.lock:
            self.disk.check("rollback", volume.key)
            newer = self._newer(volume.key, snapshot_id)
            if newer and not destroy_newer:
                raise RollbackBlocked(snapshot_id, newer)
            for sid in newer:
                self._drop(volume.key, sid)
            self.disk.volumes[volume.key] = self.disk.snapshots[(volume.key, snapshot_id)]
            self.disk.heads[volume.key] = snapshot_id
            return RollbackResult(
                snapshot_id=snapshot_id, destroyed=tuple(newer), live_generation=volume.generation
            )

    @hookimpl
    def evesnap_clone_snapshot(
        self, volume: VolumeHandle, snapshot_id: str, target: VolumeSpec
    ) -> VolumeHandle:
        with self.disk.lock:
            self.disk.check("clone", volume.key)
            try:
                data = self.disk.snapshots[(volume.key, snapshot_id)]
            except KeyError:
                raise SnapshotNotFound(snapshot_id, volume.key) from None
            if target.key in self.disk.volumes or target.key in self.disk.meta:
                raise AlreadyExists(f"clone target {target.key} exists")
            size = max(target.size_bytes, len(data))
            self.disk.require(size)
            return self._made(target, data.ljust(size, b"\0"))


class InstantRuntime:
    """Apps start and stop at once; counts starts and stops."""

    def __init__(self, persist_dir: Path | None = None) -> None:
        self.running: dict[UUID, AppSpec] = {}
        self.starts = 0
        self.stops = 0
        self.agents: dict[UUID, Path] = {}
        """Guest-agent sockets of apps (a test's fake agent), while they run."""

    @runtime_hookimpl
    def evesnap_runtime_name(self) -> str:
        return "instant"

    @runtime_hookimpl
    def evesnap_runtime_start(self, app: AppSpec) -> None:
        self.starts += 1
        self.running[app.uuid] = app

    @runtime_hookimpl
    def evesnap_runtime_stop(self, app_id: UUID, timeout: float) -> bool:
        if self.running.pop(app_id, None) is not None:
            self.stops += 1
        return True

    @runtime_hookimpl
    def evesnap_runtime_state(self, app_id: UUID) -> AppRunState:
        return "running" if app_id in self.running else "stopped"

    @runtime_hookimpl
    def evesnap_runtime_attachments(self, app_id: UUID) -> Mapping[str, LiveAttachment]:
        app = self.running.get(app_id)
        if app is None:
            return {}
        return {
            h.key: LiveAttachment(qmp_socket=Path("/nonexistent"), node_name=f"n{i}")
            for i, h in enumerate(app.volumes)
        }

    @runtime_hookimpl
    def evesnap_runtime_guest_agent(self, app_id: UUID) -> Path | None:
        return self.agents.get(app_id) if app_id in self.running else None

    @runtime_hookimpl
    def evesnap_runtime_running_apps(self) -> Sequence[UUID]:
        return list(self.running)

"""A loaded backend, called through pluggy with its declared capabilities enforced.

The orchestrator and the conformance suite talk to backends only through
:class:`Backend`: it calls exactly one plugin's hook, refuses undeclared
capabilities with NotSupported before the backend sees the call, and turns an
unexpected exception into a BackendBug that names the backend and the hook.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pluggy

from evesnap_core.errors import BackendBug, EvesnapError, NotSupported, VolumeLocked
from evesnap_core.handler_types import (
    BackendInfo,
    Capability,
    ContentSource,
    ProgressCallback,
    ReadOnlyExport,
    RollbackCheck,
    RollbackResult,
    SnapshotInfo,
    VolumeDetails,
    VolumeHandle,
    VolumeSpec,
)

log = logging.getLogger(__name__)

REQUIRED_HOOKS = (
    "evesnap_backend_info",
    "evesnap_claim_volume",
    "evesnap_destroy_volume",
    "evesnap_volume_details",
)
"""Hooks every backend implements, whatever it declares."""

CAPABILITY_HOOKS: dict[Capability, tuple[str, ...]] = {
    Capability.CREATE_VOLUME: ("evesnap_create_volume",),
    Capability.POPULATE_VOLUME: ("evesnap_populate_volume",),
    Capability.SNAPSHOT: (
        "evesnap_snapshot_volume",
        "evesnap_list_snapshots",
        "evesnap_delete_snapshot",
    ),
    Capability.LIVE_SNAPSHOT: ("evesnap_snapshot_volume",),
    Capability.ATOMIC_GROUP: ("evesnap_snapshot_group",),
    Capability.ROLLBACK_LATEST: ("evesnap_rollback", "evesnap_rollback_check"),
    Capability.ROLLBACK_ANY: ("evesnap_rollback", "evesnap_rollback_check"),
    Capability.CLONE: ("evesnap_clone_snapshot",),
    Capability.READ_ONLY: ("evesnap_open_snapshot", "evesnap_close_snapshot"),
    Capability.LIVE_DELETE: ("evesnap_delete_snapshot",),
}
"""Hooks a backend must implement for each capability it declares."""


class Backend:
    """One loaded backend: its description plus typed, capability-checked calls."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        name: str,
        info: BackendInfo,
        distribution: str = "",
        version: str = "",
    ) -> None:
        self.pm = pm
        self.name = name
        self.info = info
        self.distribution = distribution
        self.version = version
        self._callers: dict[str, Any] = {}

    # ------------------------------------------------------------ plumbing

    def has(self, capability: Capability) -> bool:
        return capability in self.info.capabilities

    def require(self, *capabilities: Capability, detail: str = "") -> None:
        """Raise NotSupported unless one of `capabilities` is declared."""
        if not any(self.has(c) for c in capabilities):
            wanted = " or ".join(c.value for c in capabilities)
            raise NotSupported(self.name, wanted, detail)

    def _caller(self, hook: str) -> Any:
        caller = self._callers.get(hook)
        if caller is None:
            plugin = self.pm.get_plugin(self.name)
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[hook] = caller
        return caller

    def call(self, hook: str, *, expect: type | None = None, **kwargs: Any) -> Any:
        """Call this backend's `hook`; typed errors pass, anything else is a bug."""
        try:
            result = self._caller(hook)(**kwargs)
        except EvesnapError:
            raise
        except Exception as exc:  # a backend bug must not take the agent down
            log.exception("backend %s raised in %s", self.name, hook)
            raise BackendBug(self.name, hook, f"{type(exc).__name__}: {exc}") from exc
        if expect is not None and not isinstance(result, expect):
            raise BackendBug(self.name, hook, f"returned {type(result).__name__}, expected {expect.__name__}")
        return result

    # ------------------------------------------------------------ volumes

    def claims(self, volume: VolumeSpec) -> bool:
        return bool(self.call("evesnap_claim_volume", volume=volume))

    def create_volume(self, volume: VolumeSpec) -> VolumeHandle:
        self.require(Capability.CREATE_VOLUME)
        result: VolumeHandle = self.call("evesnap_create_volume", expect=VolumeHandle, volume=volume)
        return result

    def populate_volume(
        self, volume: VolumeSpec, source: ContentSource, progress: ProgressCallback | None = None
    ) -> VolumeHandle:
        self.require(Capability.POPULATE_VOLUME)
        result: VolumeHandle = self.call(
            "evesnap_populate_volume",
            expect=VolumeHandle,
            volume=volume,
            source=source,
            progress=progress,
        )
        return result

    def destroy_volume(self, volume: VolumeHandle) -> None:
        self.call("evesnap_destroy_volume", volume=volume)

    def volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        result: VolumeDetails = self.call("evesnap_volume_details", expect=VolumeDetails, volume=volume)
        return result

    # ------------------------------------------------------------ snapshots

    def _require_snapshot(self, volume: VolumeHandle) -> None:
        if volume.attachment is not None:
            self.require(
                Capability.LIVE_SNAPSHOT,
                detail=f"volume {volume.key} is held by a running VM; stop it first",
            )
        else:
            self.require(Capability.SNAPSHOT)

    def snapshot(
        self,
        volume: VolumeHandle,
        snapshot_id: str,
        progress: ProgressCallback | None = None,
        retiring: bool = False,
    ) -> SnapshotInfo:
        self._require_snapshot(volume)
        result: SnapshotInfo = self.call(
            "evesnap_snapshot_volume",
            expect=SnapshotInfo,
            volume=volume,
            snapshot_id=snapshot_id,
            progress=progress,
            retiring=retiring,
        )
        return result

    def snapshot_group(
        self,
        volumes: Sequence[VolumeHandle],
        snapshot_id: str,
        progress: ProgressCallback | None = None,
    ) -> list[SnapshotInfo]:
        """All volumes' snapshots, or none: natively atomic where the backend can,
        otherwise one by one with the partial result deleted on failure."""
        for volume in volumes:
            self._require_snapshot(volume)
        if self.has(Capability.ATOMIC_GROUP) and len(volumes) > 1:
            result = self.call(
                "evesnap_snapshot_group",
                expect=list,
                volumes=list(volumes),
                snapshot_id=snapshot_id,
                progress=progress,
            )
            return list(result)
        made: list[tuple[VolumeHandle, SnapshotInfo]] = []
        try:
            for volume in volumes:
                made.append((volume, self.snapshot(volume, snapshot_id, progress)))
        except BaseException as failure:
            undo_errors = []
            for volume, _ in reversed(made):
                try:
                    self.delete_snapshot(volume, snapshot_id)
                except EvesnapError as undo:
                    undo_errors.append(f"{volume.key}: {undo}")
            if undo_errors:
                raise EvesnapError(
                    f"group snapshot {snapshot_id!r} failed ({failure}) and its cleanup "
                    f"failed too: {'; '.join(undo_errors)}"
                ) from failure
            raise
        return [info for _, info in made]

    def list_snapshots(self, volume: VolumeHandle) -> list[SnapshotInfo]:
        self.require(Capability.SNAPSHOT, Capability.LIVE_SNAPSHOT)
        return list(self.call("evesnap_list_snapshots", expect=list, volume=volume))

    def rollback_check(self, volume: VolumeHandle, snapshot_id: str) -> RollbackCheck:
        self.require(*Capability.rollback())
        result: RollbackCheck = self.call(
            "evesnap_rollback_check", expect=RollbackCheck, volume=volume, snapshot_id=snapshot_id
        )
        if volume.attachment is not None and not result.needs_stop:
            result = result.model_copy(update={"possible": False, "needs_stop": True})
        return result

    def rollback(self, volume: VolumeHandle, snapshot_id: str, destroy_newer: bool = False) -> RollbackResult:
        self.require(*Capability.rollback())
        if volume.attachment is not None:
            raise VolumeLocked(volume.key, "rollback needs the app stopped")
        result: RollbackResult = self.call(
            "evesnap_rollback",
            expect=RollbackResult,
            volume=volume,
            snapshot_id=snapshot_id,
            destroy_newer=destroy_newer,
        )
        return result

    def delete_snapshot(self, volume: VolumeHandle, snapshot_id: str) -> None:
        if volume.attachment is not None:
            self.require(
                Capability.LIVE_DELETE,
                detail=f"volume {volume.key} is held by a running VM; delete after it stops",
            )
        else:
            self.require(Capability.SNAPSHOT, Capability.LIVE_SNAPSHOT)
        self.call("evesnap_delete_snapshot", volume=volume, snapshot_id=snapshot_id)

    def clone(
        self,
        volume: VolumeHandle,
        snapshot_id: str,
        target: VolumeSpec,
        progress: ProgressCallback | None = None,
    ) -> VolumeHandle:
        self.require(Capability.CLONE)
        result: VolumeHandle = self.call(
            "evesnap_clone_snapshot",
            expect=VolumeHandle,
            volume=volume,
            snapshot_id=snapshot_id,
            target=target,
            progress=progress,
        )
        return result

    def open_snapshot(self, volume: VolumeHandle, snapshot_id: str, runtime_dir: str) -> ReadOnlyExport:
        self.require(Capability.READ_ONLY)
        result: ReadOnlyExport = self.call(
            "evesnap_open_snapshot",
            expect=ReadOnlyExport,
            volume=volume,
            snapshot_id=snapshot_id,
            runtime_dir=runtime_dir,
        )
        return result

    def close_snapshot(self, volume: VolumeHandle, export: ReadOnlyExport) -> None:
        self.require(Capability.READ_ONLY)
        self.call("evesnap_close_snapshot", volume=volume, export=export)

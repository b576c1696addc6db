"""Hook specifications of a volume handler (a backend), plugin API version 1.

A backend is a distribution that registers, under the entry-point group
``evesnap.volume_handlers``, a factory: a callable taking a
:class:`~evesnap_core.handler_types.BackendContext` and returning an object whose
methods are marked with :data:`evesnap_core.hookimpl`. The core registers that
object into its pluggy ``PluginManager`` under the entry point's name and calls it
through :class:`evesnap_core.backend.Backend`, which checks capabilities first:
a hook for a capability the backend did not declare is never called, the caller
gets :class:`~evesnap_core.errors.NotSupported` instead.

Rules every implementation follows (the conformance suite checks them):

* Arguments and results are the pydantic models of
  :mod:`evesnap_core.handler_types`; an implementation may accept only the
  arguments it needs (pluggy passes the rest by name).
* Errors are the typed ones of :mod:`evesnap_core.errors`: a volume that does
  not exist is ``VolumeNotFound``, an unknown snapshot ``SnapshotNotFound``,
  too little space ``NoSpace(where, needed, available)`` raised before a byte
  is written. Anything else is treated as a bug in the backend (``BackendBug``)
  and reported as such on the app it hit.
* ``snapshot_id`` is the app-level key the core chose: any string of up to
  1024 characters (``evesnap_core.toolkit.names.MAX_SNAPSHOT_ID``). A backend
  maps it to a safe native name of its own (``toolkit.safe_name``: injective,
  bounded), and finds the snapshot again from the same id after a restart, in
  a new process.
* Concurrency: the core may call hooks for different volumes at the same time,
  from threads of one agent or from several processes (the agent and a CLI
  command). A backend serialises every hook that touches one volume with a
  per-volume lock that holds across processes (``toolkit.volume_lock``); a hook
  that cannot get it within ``toolkit.LOCK_TIMEOUT`` seconds raises
  ``VolumeLocked`` and never proceeds unlocked. Volumes of one call (a group,
  a clone's source and target) are locked in one sorted order.
* Creates are idempotent (the same request twice returns the existing object),
  deletes are idempotent (deleting what does not exist succeeds).
* Nothing is left half-done or behind: an operation that fails cleans up what
  it made, and after delete, destroy and close no file, process or socket the
  backend made for that object remains (``toolkit.tempfiles``).
* A volume whose handle carries an ``attachment`` is held by a running VM: use
  the live path or raise :class:`~evesnap_core.errors.VolumeLocked`; never run an
  offline tool against it.

Every change to these signatures bumps ``PLUGIN_API_VERSION`` and is recorded in
``docs/plugin-api-changelog.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from evesnap_core.handler_types import (
    BackendInfo,
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

PROJECT = "evesnap"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- describing


@hookspec(firstresult=True)
def evesnap_backend_info() -> BackendInfo:  # type: ignore[empty-body]
    """Describe the backend: name, plugin API version, capabilities, formats.

    Called once at load time; the answer decides which other hooks may be called.
    A backend that cannot work here (library missing, no pool) still answers, with
    ``available=False`` and the reason, so that operators see why.
    """


@hookspec(firstresult=True)
def evesnap_claim_volume(volume: VolumeSpec) -> bool | None:
    """Say whether this backend serves `volume`: True claims it, None passes.

    Backends are asked in pluggy's call order (``tryfirst``/``trylast`` move a
    backend) and the first claim wins, unless the spec names a backend.
    """


# ---------------------------------------------------------------- volumes


@hookspec(firstresult=True)
def evesnap_create_volume(volume: VolumeSpec) -> VolumeHandle:  # type: ignore[empty-body]
    """Create a blank volume of ``volume.size_bytes`` (capability create_volume).

    Idempotent: an existing volume with the same uuid, generation, format and size
    is returned; one that differs raises AlreadyExists.
    """


@hookspec(firstresult=True)
def evesnap_populate_volume(  # type: ignore[empty-body]
    volume: VolumeSpec, source: ContentSource, progress: ProgressCallback | None
) -> VolumeHandle:
    """Create a volume holding the content image `source` (capability populate_volume).

    The volume's virtual size is the larger of ``volume.size_bytes`` and the
    image's. Free space is checked before writing; a failure leaves nothing behind.
    """


@hookspec(firstresult=True)
def evesnap_destroy_volume(volume: VolumeHandle) -> None:
    """Remove the volume and everything it holds. Idempotent.

    Snapshots survive it exactly when the backend's ``snapshot_space`` is
    ``full_copy``: such snapshots are whole, independent copies; they stay
    listed (``evesnap_list_snapshots`` on the same handle), a rollback brings
    the volume back, and only ``evesnap_delete_snapshot`` frees them. A
    ``copy_on_write`` backend's snapshots go with the volume."""


@hookspec(firstresult=True)
def evesnap_volume_details(volume: VolumeHandle) -> VolumeDetails:  # type: ignore[empty-body]
    """Format, virtual and actual size, and whether the volume is dirty or corrupt."""


# ---------------------------------------------------------------- snapshots


@hookspec(firstresult=True)
def evesnap_snapshot_volume(  # type: ignore[empty-body]
    volume: VolumeHandle, snapshot_id: str, progress: ProgressCallback | None, retiring: bool
) -> SnapshotInfo:
    """Take a snapshot of one volume (capability snapshot, or live_snapshot when
    the handle is attached). Verified before returning; idempotent per id.

    `retiring` says a purge is about to replace this volume with a new
    generation and the core will not use it again: a backend that keeps whole
    volumes may keep this one as the snapshot instead of copying it.
    """


@hookspec(firstresult=True)
def evesnap_snapshot_group(  # type: ignore[empty-body]
    volumes: Sequence[VolumeHandle], snapshot_id: str, progress: ProgressCallback | None
) -> list[SnapshotInfo]:
    """Snapshot several volumes of one app in one atomic operation (capability
    atomic_group): all snapshots exist afterwards, or none. Without the
    capability the core snapshots volume by volume and undoes a partial result."""


@hookspec(firstresult=True)
def evesnap_list_snapshots(volume: VolumeHandle) -> list[SnapshotInfo]:  # type: ignore[empty-body]
    """The volume's snapshots that this backend made, oldest first (parents before
    children)."""


@hookspec(firstresult=True)
def evesnap_rollback_check(  # type: ignore[empty-body]
    volume: VolumeHandle, snapshot_id: str
) -> RollbackCheck:
    """Say honestly whether a rollback to `snapshot_id` can happen now and what
    blocks it (newer snapshots it would destroy, a VM that must stop). Changes
    nothing. An unknown snapshot raises SnapshotNotFound (or answers
    ``possible=False``), never "possible"."""


@hookspec(firstresult=True)
def evesnap_rollback(  # type: ignore[empty-body]
    volume: VolumeHandle, snapshot_id: str, destroy_newer: bool
) -> RollbackResult:
    """Make the volume's content that of the snapshot (capability rollback_any or
    rollback_latest). Newer snapshots are destroyed only when `destroy_newer` is
    set, and the result lists them; otherwise RollbackBlocked names them."""


@hookspec(firstresult=True)
def evesnap_delete_snapshot(volume: VolumeHandle, snapshot_id: str) -> None:
    """Delete one snapshot; deleting an unknown one succeeds. A snapshot that
    clones or exports depend on raises SnapshotInUse. Errors are raised, never
    swallowed."""


@hookspec(firstresult=True)
def evesnap_clone_snapshot(  # type: ignore[empty-body]
    volume: VolumeHandle,
    snapshot_id: str,
    target: VolumeSpec,
    progress: ProgressCallback | None,
) -> VolumeHandle:
    """Make `target`, a new volume independent of its source and of the
    snapshot (writing any of the three never changes the others), holding the
    snapshot's content (capability clone).

    Not idempotent: the core clones into a new uuid every time, so a `target`
    that already exists raises AlreadyExists and is left as it is (a failed
    clone leaves no target, so a retry never meets one).

    While the app runs, `volume` carries its live attachment: a backend that
    declares live_snapshot clones beside the running VM (the suite's
    TestBesideARunningVM checks it)."""


@hookspec(firstresult=True)
def evesnap_open_snapshot(  # type: ignore[empty-body]
    volume: VolumeHandle, snapshot_id: str, runtime_dir: str
) -> ReadOnlyExport:
    """Expose the snapshot read-only to standard tools (capability read_only):
    a path or an NBD unix socket under `runtime_dir`. Writes through it must fail.

    `volume` carries its live attachment while the app runs; a backend that
    declares live_snapshot opens beside the running VM, and an open export must
    never keep a VM from taking the volume (no lock a writer conflicts with)."""


@hookspec(firstresult=True)
def evesnap_close_snapshot(volume: VolumeHandle, export: ReadOnlyExport) -> None:
    """Release an export made by evesnap_open_snapshot. Idempotent."""

"""The backend toolkit: the chores every backend needs, written once.

Part of the versioned plugin API (``TOOLKIT_VERSION``, recorded in
docs/plugin-api-changelog.md). A backend imports from ``evesnap_core`` (the
hook marker, the types, the errors), ``evesnap_core.hookspecs``,
``evesnap_core.handler_types``, ``evesnap_core.errors`` and this namespace,
nothing else of the core; its harness and tests may also use
``evesnap_core.testing``.

- :mod:`.content`: content-image inspection (refuses backing files, external data
  files, anything else that makes qemu read another file) and raw population.
- :mod:`.space`: free-space checks raising ``NoSpace(where, needed, available)``
  before a byte is written.
- :mod:`.locks`: the per-volume lock and the concurrency rule.
- :mod:`.lineage`: parents re-pointed on delete, parents-first listing.
- :mod:`.names`: the injective, bounded safe name of a snapshot id.
- :mod:`.tempfiles`: temporaries that never outlive a failed or killed operation.
- :mod:`.copies`: reflink or sparse whole-file copies.
- Re-exported here for backends: :func:`run` (subprocesses, the one safe way),
  the durable-file helpers (confined to the persist folder: :func:`confined`,
  :func:`open_regular`, :func:`read_regular`, :func:`append_durably`),
  :func:`crashpoint`, the QMP client and its errors, and :class:`PeerBackend`
  (what ``BackendContext.peer(name)`` returns).
"""

from evesnap_core.backend import Backend as PeerBackend
from evesnap_core.crashpoints import crashpoint
from evesnap_core.durable import (
    append_durably,
    atomic_write,
    confined,
    durable_unlink,
    ensure_dir,
    fsync_dir,
    open_regular,
    read_regular,
)
from evesnap_core.process import run
from evesnap_core.qemu import QmpClient, QmpDisconnected, QmpError, QmpTimeout
from evesnap_core.toolkit.content import ContentImage, inspect_content, populate_raw, write_content
from evesnap_core.toolkit.copies import copy_file, reflink
from evesnap_core.toolkit.handles import handle_for
from evesnap_core.toolkit.lineage import after_delete, parents_first, reparented
from evesnap_core.toolkit.locks import LOCK_TIMEOUT, serialised, volume_lock
from evesnap_core.toolkit.names import safe_name
from evesnap_core.toolkit.space import (
    allocated_bytes,
    enospc_as_nospace,
    free_bytes,
    require_free,
    require_space,
)
from evesnap_core.toolkit.tempfiles import publish, sweep, temp_dir, temp_file

TOOLKIT_VERSION = 2
"""Bumped with every change to this namespace (docs/plugin-api-changelog.md)."""

__all__ = [
    "LOCK_TIMEOUT",
    "TOOLKIT_VERSION",
    "ContentImage",
    "PeerBackend",
    "QmpClient",
    "QmpDisconnected",
    "QmpError",
    "QmpTimeout",
    "after_delete",
    "allocated_bytes",
    "append_durably",
    "atomic_write",
    "confined",
    "copy_file",
    "crashpoint",
    "durable_unlink",
    "enospc_as_nospace",
    "ensure_dir",
    "free_bytes",
    "fsync_dir",
    "handle_for",
    "inspect_content",
    "open_regular",
    "parents_first",
    "populate_raw",
    "publish",
    "read_regular",
    "reflink",
    "reparented",
    "require_free",
    "require_space",
    "run",
    "safe_name",
    "serialised",
    "sweep",
    "temp_dir",
    "temp_file",
    "volume_lock",
    "write_content",
]

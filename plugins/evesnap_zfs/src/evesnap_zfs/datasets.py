"""Reading and changing datasets: the ``zfs`` command where libzfs_core cannot
(listing snapshots, properties), and destroys retried while ZFS says busy.

libzfs_core's listing calls raise NotImplementedError upstream, so snapshots are
listed with ``zfs list`` sorted by createtxg; every call has a timeout and a
failure keeps ZFS's own words.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from evesnap_core import EvesnapError, SnapshotInUse
from evesnap_core.toolkit import run
from evesnap_zfs import names

Row = tuple[str, str | None, str | None, int]
"""(full snapshot name, snapshot id, parent id, creation time)."""
EBUSY = 16


def snapshots(dataset: str) -> list[Row]:
    """The zvol's snapshots, oldest first."""
    columns = f"name,creation,{names.ID_PROP},{names.PARENT_PROP}"
    argv = ["zfs", "list", "-H", "-p", "-t", "snapshot", "-d", "1", "-s", "createtxg", "-o", columns, dataset]
    rows = []
    for line in run(argv, timeout=60).stdout.decode().splitlines():
        name, created, ident, parent = line.split("\t")
        rows.append((name, names.decode(ident), names.decode(parent), int(created)))
    return rows


def number(prop: str, dataset: str) -> int:
    """A numeric property (volsize, used, available) of `dataset`."""
    out = run(["zfs", "get", "-Hp", "-o", "value", prop, dataset], timeout=60)
    return int(out.stdout.decode().strip())


def set_parent(snapshot: str, parent: str | None) -> None:
    """Write (or, for None, clear) the evesnap:parent property of `snapshot`."""
    if parent is None:
        run(["zfs", "inherit", names.PARENT_PROP, snapshot], timeout=60)
    else:
        run(["zfs", "set", f"{names.PARENT_PROP}={names.encode(parent)}", snapshot], timeout=60)


def clones_of(snaps: list[bytes]) -> list[str]:
    found = []
    for snap in snaps:
        out = run(["zfs", "get", "-H", "-o", "value", "clones", snap.decode()], timeout=60, check=False)
        found += [c for c in out.stdout.decode().strip().split(",") if c and c != "-"]
    return found


def errors_of(exc: Exception) -> str:
    errors = getattr(exc, "errors", None) or [exc]
    return "; ".join(f"{type(e).__name__}: {e}" for e in errors)


def destroy_snaps(
    lzc: Any, exc_mod: Any, snaps: list[bytes], where: str, snapshot_id: str, retries: int, pause: float
) -> None:
    """Destroy, retrying `retries` times while ZFS says busy; a cloned snapshot
    is in use; every other failure is raised, never swallowed."""
    for attempt in range(retries + 1):
        try:
            lzc.lzc_destroy_snaps(snaps, defer=False)
            return
        except exc_mod.SnapshotDestructionFailure as exc:
            errors = list(getattr(exc, "errors", []))
            if any(isinstance(e, exc_mod.SnapshotIsCloned) for e in errors):
                raise SnapshotInUse(
                    snapshot_id or snaps[0].decode(), clones_of(snaps) or ["a clone"]
                ) from exc
            busy = any(getattr(e, "errno", None) == EBUSY for e in errors)
            if not busy or attempt == retries:
                raise EvesnapError(f"ZFS could not destroy snapshots of {where}: {errors_of(exc)}") from exc
        time.sleep(pause)


def retry_busy(exc_mod: Any, action: Callable[[], object], dataset: str, retries: int, pause: float) -> None:
    for attempt in range(retries + 1):
        try:
            action()
            return
        except exc_mod.DatasetBusy as exc:
            if attempt == retries:
                raise EvesnapError(f"{dataset} stayed busy after {retries} retries: {exc}") from exc
        time.sleep(pause)

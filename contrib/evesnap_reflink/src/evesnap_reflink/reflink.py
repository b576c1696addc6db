"""Reflink copies: a new file sharing the source's extents (FICLONE ioctl).

A reflink copy costs milliseconds and no data space whatever the file's size,
and the two files are independent afterwards (the filesystem copies an extent
on the first write to either). XFS (reflink=1, the mkfs default) and btrfs
have it; ext4, tmpfs and overlayfs do not, and answer EOPNOTSUPP.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from evesnap_core import BackendUnavailable, EvesnapError
from evesnap_core.toolkit import publish, reflink, temp_file
from evesnap_reflink import NAME


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (from /proc/self/mountinfo), so
    that an error can say "ext4" instead of leaving the operator to guess."""
    target = os.path.realpath(path)
    best, fstype = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if "-" not in fields:
                continue
            mount_point = fields[4].replace("\\040", " ")
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, fstype = mount_point, fields[fields.index("-") + 1]
    return fstype


def no_reflink_reason(folder: Path, detail: str) -> str:
    return (
        f"{folder} is on {filesystem_type(folder)}, which cannot make reflink copies ({detail}); "
        "put the persist folder on XFS (reflink=1) or btrfs"
    )


def clone_file(source: Path, target: Path) -> None:
    """Make `target` (which must not exist) a reflink copy of `source`, fsynced.

    On any failure `target` is removed, and the error is a typed one: NoSpace when
    the filesystem cannot even record the shared extents, BackendUnavailable when
    it cannot share extents at all (this backend never makes full copies).
    """
    try:
        shared = reflink(source, target)
    except OSError as exc:
        raise EvesnapError(f"reflink copy of {source} to {target} failed: {exc}") from exc
    if not shared:
        raise BackendUnavailable(NAME, no_reflink_reason(target.parent, "FICLONE refused"))


def clone_file_atomic(source: Path, target: Path) -> None:
    """Replace `target` with a reflink copy of `source`: the clone is made under a
    temporary name beside `target` and renamed over it, so a crash leaves the old
    content or the new, never a half-made file under the real name."""
    with temp_file(target) as temporary:
        clone_file(source, temporary)
        publish(temporary, target)


def probe(folder: Path) -> str:
    """Why `folder` cannot hold reflink copies, or "" when it can.

    Tried for real (two small files, one FICLONE), because neither the filesystem
    type nor its mount options say for sure: XFS made with reflink=0 exists.
    """
    token = secrets.token_hex(6)
    source = folder / f".reflink-probe-{token}.src"
    target = folder / f".reflink-probe-{token}.dst"
    try:
        fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"evesnap reflink probe\n")
        finally:
            os.close(fd)
        clone_file(source, target)
    except BackendUnavailable as exc:
        return exc.reason
    except (OSError, EvesnapError) as exc:
        return f"cannot test reflink support in {folder}: {exc}"
    finally:
        for leftover in (source, target):
            leftover.unlink(missing_ok=True)
    return ""

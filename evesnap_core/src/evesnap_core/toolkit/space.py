"""Free-space checks: refuse with NoSpace(where, needed, available) before a byte
is written, and turn an ENOSPC that happens anyway into the same typed error.

Every backend needs this before a copy, a conversion or a clone; the answer is
what an unprivileged writer may still use (root's reserve excluded), so that a
check never passes on space only root could write into.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from evesnap_core.errors import CommandFailed, NoSpace

ENOSPC_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use in `folder`'s filesystem (the
    nearest existing parent when `folder` is not made yet)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    stat = os.statvfs(probe)
    return stat.f_bavail * stat.f_frsize


def allocated_bytes(path: Path) -> int:
    """Bytes the file occupies on disk (holes cost nothing)."""
    return path.stat().st_blocks * 512


def require_free(where: str, needed: int, available: int) -> None:
    """NoSpace(where, needed, available) unless `needed` fits: for places that are
    not a folder (a ZFS pool, a volume group) whose free space the caller read."""
    if needed > available:
        raise NoSpace(where, needed, available)


def require_space(folder: Path, needed: int) -> None:
    """NoSpace unless `needed` bytes fit in `folder`'s filesystem now."""
    require_free(str(folder), needed, free_bytes(folder))


def is_enospc(exc: BaseException) -> bool:
    """Whether `exc` says the disk is full: an OSError, or a tool's stderr."""
    if isinstance(exc, OSError):
        return exc.errno in ENOSPC_ERRNOS
    if isinstance(exc, CommandFailed):
        return "No space left on device" in exc.stderr or "Disk quota exceeded" in exc.stderr
    return False


@contextlib.contextmanager
def enospc_as_nospace(folder: Path, needed: int) -> Iterator[None]:
    """Inside: a full disk (someone else filled it after the check) is raised as
    NoSpace naming `folder`, never as a bare OSError or a tool's failure."""
    try:
        yield
    except (OSError, CommandFailed) as exc:
        if is_enospc(exc):
            raise NoSpace(str(folder), needed, free_bytes(folder)) from exc
        raise

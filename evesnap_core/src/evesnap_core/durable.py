"""Files that must survive a crash: written whole or not at all.

Write to a temporary file in the same folder, fsync it, rename it over the
target, fsync the folder. A reader sees the old content or the new, never a mix;
after a crash the rename either happened or did not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from evesnap_core.errors import NoSpace

FILE_MODE = 0o600
DIR_MODE = 0o700


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create `path` (and parents) with `mode`, and make the new entries durable."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=mode)
        os.chmod(d, mode)
        fsync_dir(d.parent)
    return path


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` durably; readers never see a partial file.

    A full disk raises NoSpace (and leaves the old file as it was).
    """
    try:
        _atomic_write(path, data, mode)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            stat = os.statvfs(path.parent)
            raise NoSpace(str(path.parent), len(data), stat.f_bavail * stat.f_frsize) from exc
        raise


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def durable_unlink(path: Path) -> bool:
    """Remove `path` if present and make the removal durable; True if it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True

"""Whole-file copies of volumes: a reflink where the filesystem shares extents,
else a sparse-aware copy whose space is checked before the first byte.

FICLONE makes the copy share every extent with the original (XFS with
reflink, btrfs): instant and free until either side is written. Where it is
refused (ext4), the data extents are copied one by one (SEEK_DATA/SEEK_HOLE,
so holes stay holes) after checking that the filesystem has room for the
allocated bytes. A copy that fails removes its partial file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Literal

from evesnap_core import NoSpace, ProgressCallback
from evesnap_core.crashpoints import crashpoint
from evesnap_core.durable import fsync_dir

FICLONE = 0x40049409
CHUNK = 8 << 20


def allocated(path: Path) -> int:
    """Bytes the file occupies on disk: what a sparse-preserving copy needs, and
    what a snapshot holds (a sparse volume's holes cost nothing)."""
    return path.stat().st_blocks * 512


def free_space(folder: Path) -> int:
    """Bytes an unprivileged writer may still use there (root's reserve excluded)."""
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def _private(path: str, flags: int) -> int:
    """Opener for new volume files: readable by their owner only."""
    return os.open(path, flags, 0o600)


def reflink(src: Path, dst: Path) -> bool:
    """Clone `src` into a new `dst` sharing its extents; False where unsupported."""
    with open(src, "rb") as fin, open(dst, "xb", opener=_private) as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM):
                fout.close()
                dst.unlink()
                return False
            raise
        os.fsync(fout.fileno())
    return True


def copy(src: Path, dst: Path, progress: ProgressCallback | None = None) -> Literal["reflink", "copy"]:
    """Copy `src` to the new file `dst` and say how. A full copy that cannot fit
    raises NoSpace before writing a byte; no partial `dst` is ever left."""
    try:
        if reflink(src, dst):
            return "reflink"
        needed, available = allocated(src), free_space(dst.parent)
        if needed > available:
            raise NoSpace(str(dst.parent), needed, available)
        try:
            _sparse_copy(src, dst, needed, progress)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # someone else filled the disk meanwhile
                raise NoSpace(str(dst.parent), needed, free_space(dst.parent)) from exc
            raise
        return "copy"
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            dst.unlink()
        raise


def _sparse_copy(src: Path, dst: Path, total: int, progress: ProgressCallback | None) -> None:
    done = 0
    with open(src, "rb") as fin, open(dst, "xb", opener=_private) as fout:
        size = os.fstat(fin.fileno()).st_size
        fd_in, fd_out = fin.fileno(), fout.fileno()
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd_in, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(fd_in, start, os.SEEK_HOLE)
            pos = start
            while pos < end:
                n = os.copy_file_range(fd_in, fd_out, min(CHUNK, end - pos), pos, pos)
                if n == 0:
                    break
                pos += n
                done += n
                if progress is not None:
                    progress(min(done, total), total)
            offset = end
        os.ftruncate(fd_out, size)
        os.fsync(fd_out)
    if progress is not None:
        progress(total, total)


def copy_to(
    src: Path, dst: Path, progress: ProgressCallback | None = None, point: str = ""
) -> Literal["reflink", "copy"]:
    """Copy `src` over `dst` through a temporary name, so that `dst` is whole or
    untouched: a crash mid-copy leaves only the temporary, which the next call
    removes. `point` names the crash point between the copy and the rename."""
    tmp = dst.with_name(f".{dst.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    mode = copy(src, tmp, progress)
    if point:
        crashpoint(point)
    publish(tmp, dst)
    return mode


def publish(tmp: Path, dst: Path) -> None:
    """Give a finished file its real name, durably; a failure removes it."""
    try:
        tmp.replace(dst)
        fsync_dir(dst.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise

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
from collections.abc import Callable
from pathlib import Path

from evesnap_core import NoSpace

FICLONE = 0x40049409
CHUNK = 8 << 20


def allocated(path: Path) -> int:
    """Bytes the file occupies on disk (what a full copy needs)."""
    return path.stat().st_blocks * 512


def free_space(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def reflink(src: Path, dst: Path) -> bool:
    """Clone `src` into a new `dst` sharing its extents; False where unsupported."""
    with open(src, "rb") as fin, open(dst, "xb") as fout:
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


def copy(src: Path, dst: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """Copy `src` to the new file `dst`: "reflink" or "copy". NoSpace before writing
    when a full copy cannot fit; no partial `dst` is ever left."""
    try:
        if reflink(src, dst):
            return "reflink"
        needed, available = allocated(src), free_space(dst.parent)
        if needed > available:
            raise NoSpace(str(dst.parent), needed, available)
        _sparse_copy(src, dst, needed, progress)
        return "copy"
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            dst.unlink()
        raise


def _sparse_copy(src: Path, dst: Path, total: int, progress: Callable[[int, int], None] | None) -> None:
    done = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
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

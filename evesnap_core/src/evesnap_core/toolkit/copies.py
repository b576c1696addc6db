"""Whole-file copies of volume files: a reflink where the filesystem shares
extents, else (when the caller allows it) a sparse copy checked for space first.

FICLONE makes the copy share every extent with the original (XFS with reflink,
btrfs): instant and free until either side is written, and independent after.
Where it is refused (ext4, tmpfs) a full copy moves only the data extents
(SEEK_DATA/SEEK_HOLE, so holes stay holes), after :mod:`.space` says they fit.
The destination must not exist; a copy that fails removes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Literal

from evesnap_core.handler_types import ProgressCallback
from evesnap_core.toolkit.space import allocated_bytes, enospc_as_nospace, require_space

FICLONE = 0x40049409
"""_IOW(0x94, 9, int) from linux/fs.h."""
NO_REFLINK_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.EPERM})
"""What FICLONE answers when the filesystem (or the pair of files) cannot share extents."""
CHUNK = 8 << 20


def _new_file(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def reflink(src: Path, dst: Path) -> bool:
    """Make the new file `dst` share `src`'s extents; False (and no `dst`) where
    the filesystem cannot; a full disk is NoSpace."""
    fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd_out = _new_file(dst)
        try:
            with enospc_as_nospace(dst.parent, allocated_bytes(src)):
                try:
                    fcntl.ioctl(fd_out, FICLONE, fd_in)
                except OSError as exc:
                    if exc.errno in NO_REFLINK_ERRNOS:
                        os.close(fd_out)
                        fd_out = -1
                        dst.unlink()
                        return False
                    raise
                os.fsync(fd_out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                dst.unlink()
            raise
        finally:
            if fd_out >= 0:
                os.close(fd_out)
    finally:
        os.close(fd_in)
    return True


def copy_file(src: Path, dst: Path, progress: ProgressCallback | None = None) -> Literal["reflink", "copy"]:
    """Copy `src` to the new file `dst` and say how: a reflink, else a sparse
    full copy that raises NoSpace before writing a byte when it cannot fit."""
    if reflink(src, dst):
        return "reflink"
    needed = allocated_bytes(src)
    require_space(dst.parent, needed)
    try:
        with enospc_as_nospace(dst.parent, needed):
            sparse_copy(src, dst, progress)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            dst.unlink()
        raise
    return "copy"


def _copy_range(fd_in: int, fd_out: int, length: int, pos: int) -> int:
    """copy_file_range where the kernel does it (across filesystems it may not:
    EXDEV), else a plain read and write of the same range."""
    try:
        return os.copy_file_range(fd_in, fd_out, length, pos, pos)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    data = os.pread(fd_in, length, pos)
    view = memoryview(data)
    while view:
        written = os.pwrite(fd_out, view, pos + len(data) - len(view))
        view = view[written:]
    return len(data)


def sparse_copy(src: Path, dst: Path, progress: ProgressCallback | None = None) -> None:
    """Copy only the data extents of `src` into the new file `dst` (same size,
    holes kept), fsynced."""
    total = allocated_bytes(src)
    done = 0
    with open(src, "rb") as fin:
        fd_in = fin.fileno()
        fd_out = _new_file(dst)
        try:
            size = os.fstat(fd_in).st_size
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
                    n = _copy_range(fd_in, fd_out, min(CHUNK, end - pos), pos)
                    if n == 0:
                        break
                    pos += n
                    done += n
                    if progress is not None:
                        progress(min(done, total), total)
                offset = end
            os.ftruncate(fd_out, size)
            os.fsync(fd_out)
        finally:
            os.close(fd_out)
    if progress is not None:
        progress(total, total)

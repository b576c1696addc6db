"""Files that must survive a crash: written whole or not at all; and written
nowhere but where they belong.

Write to a temporary file in the same folder, fsync it, rename it over the
target, fsync the folder. A reader sees the old content or the new, never a mix;
after a crash the rename either happened or did not.

Confinement: once a folder is declared with :func:`confine` (the persist and
runtime folders, by the session that opens them), every write helper here checks
the path it is given with :func:`confined` first: from that folder down, every
component must be a real folder, never a symbolic link (a link planted in place
of a state folder, or of a file that is appended to or locked, would make
evesnap write wherever it points). The check is made on each component without
following links (``lstat``), and the files opened here are opened with
``O_NOFOLLOW``. Backends reach these helpers through ``evesnap_core.toolkit``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from evesnap_core.errors import NoSpace, UnsafePath

FILE_MODE = 0o600
DIR_MODE = 0o700

_ROOTS: set[Path] = set()
"""The folders declared with `confine` (as given, and resolved)."""


def confine(*roots: Path) -> None:
    """Check every write below each of `roots` from now on (see `confined`).

    A root itself may be reached through a link (the operator's choice of
    ``--persist``); what lies below it may not."""
    for root in roots:
        _ROOTS.add(Path(os.path.abspath(root)))
        _ROOTS.add(Path(os.path.realpath(root)))


def _root_of(path: Path) -> Path | None:
    """The nearest declared folder at or above `path` (a lookup per level, however many)."""
    for candidate in (path, *path.parents):
        if candidate in _ROOTS:
            return candidate
    return None


def kind_of(mode: int) -> str:
    """What a file is, in words, for a message."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a file"


def confined(path: Path, final: bool = True) -> Path:
    """`path`, checked before evesnap writes to (or through) it; else UnsafePath.

    Below a folder declared with `confine`, every component from that folder
    down to `path`'s parent that exists must be a real folder, not a symbolic
    link; with `final`, `path` itself must not be a link either. A path below no
    declared folder (one the operator named, as ``agent --reports``) is the
    operator's business and is not checked."""
    absolute = Path(os.path.abspath(path))
    root = _root_of(absolute)
    if root is None or absolute == root:
        return path
    current = root
    parts = absolute.relative_to(root).parts
    for part in parts[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return path  # the rest is yet to be made (ensure_dir makes it, as folders)
        if stat.S_ISLNK(mode):
            raise UnsafePath(str(current), "a symbolic link")
        if not stat.S_ISDIR(mode):
            raise UnsafePath(str(current), f"{kind_of(mode)}, not a folder")
    if final:
        try:
            mode = os.lstat(absolute).st_mode
        except FileNotFoundError:
            return path
        if stat.S_ISLNK(mode):
            raise UnsafePath(str(absolute), "a symbolic link")
    return path


def read_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them; else UnsafePath.

    Opened without following a link and without waiting (a FIFO would block
    forever), checked with fstat before the first byte: a link, a FIFO, a device
    or a folder, or a file larger than `limit`, is refused unread. OSError
    (FileNotFoundError, EACCES, ...) goes to the caller as it is."""
    where = os.fspath(path)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(where, "a symbolic link, not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(where, f"{kind_of(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise UnsafePath(where, f"{info.st_size} bytes, more than such a file may hold ({limit})")
        chunks = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, min(1 << 20, left))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    if left <= 0:  # it grew while read
        raise UnsafePath(where, f"more than such a file may hold ({limit} bytes)")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_regular(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """A descriptor of the regular file `path` (created with `mode` if `flags`
    say so), opened without following a link and without waiting; `path` is
    `confined` first. Anything but a regular file is UnsafePath."""
    confined(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(str(path), "a symbolic link, not a regular file") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO):
            raise UnsafePath(str(path), _kind_at(path) + ", not a regular file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePath(str(path), f"{kind_of(info.st_mode)}, not a regular file")
    return fd


def _kind_at(path: Path) -> str:
    try:
        return kind_of(os.lstat(path).st_mode)
    except OSError as exc:
        return f"unusable ({exc.strerror})"


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` to the existing regular file `path` and fdatasync it (a
    log-structured file); never through a link. A full disk raises NoSpace."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            st = os.statvfs(path.parent)
            raise NoSpace(str(path.parent), len(data), st.f_bavail * st.f_frsize) from exc
        raise
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create `path` (and parents) with `mode`, and make the new entries durable.

    Below a confined folder, an existing component that is a link (or not a
    folder) is UnsafePath, and so is `path` itself as a link."""
    confined(path)
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
    confined(path, final=False)  # the rename replaces a link, never writes through it
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
    confined(path, final=False)  # a link is removed itself, never what it points to
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True

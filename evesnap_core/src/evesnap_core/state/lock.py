"""One writer per persist folder, and persist and runtime folders only their owner can change."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import stat
from pathlib import Path

from evesnap_core.durable import kind_of, open_regular
from evesnap_core.errors import ConfigError, LockHeld, UnsafePath

LOCK_FILE = "evesnap.lock"


def check_persist(persist: Path) -> None:
    """Refuse a persist folder another user could change: they could plant state,
    volumes or links (a link in place of the lock file would make root overwrite
    any file with its pid). See `check_folder`."""
    check_folder(persist, "--persist")


def check_folder(folder: Path, setting: str) -> None:
    """Refuse `folder` (ConfigError naming `setting` and the path, one line) unless
    it is owned by the user evesnap runs as, not writable by group or others, and
    no folder above it up to ``/`` is writable by others without being sticky
    (as ``/tmp`` is): anyone could otherwise rename it away and put their own."""
    info = folder.stat()
    mode = info.st_mode & 0o777
    if mode & 0o022:
        raise ConfigError(
            setting,
            f"{folder} is writable by group or others (mode {mode:04o}); run: chmod 700 {folder}",
        )
    euid = os.geteuid()
    if info.st_uid != euid:
        raise ConfigError(
            setting,
            f"{folder} is owned by {_user(info.st_uid)}, not by {_user(euid)} that evesnap runs as; "
            f"run: chown {euid} {folder}",
        )
    for parent in Path(os.path.realpath(folder)).parents:
        pinfo = parent.stat()
        if pinfo.st_mode & stat.S_IWOTH and not pinfo.st_mode & stat.S_ISVTX:
            raise ConfigError(
                setting,
                f"{parent}, above {folder}, is writable by others and not sticky "
                f"(mode {pinfo.st_mode & 0o7777:04o}); run: chmod o-w {parent}",
            )


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def writer_lock(persist: Path) -> int:
    """Hold the persist folder for this process: two writers must never share it.

    The lock is an flock on ``<persist>/evesnap.lock`` holding the holder's pid;
    it dies with the process, so a restart after a crash is never blocked.
    Returns the descriptor that holds it (closing it releases the lock).

    The lock file is opened without following a link and without waiting, and
    must be a regular file: a link planted there would make evesnap truncate
    and write whatever it points at, a FIFO would hang every write command.
    Anything else is refused with a ConfigError naming it (exit 2).
    """
    path = persist / LOCK_FILE
    try:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o600)
    except UnsafePath as exc:
        raise ConfigError("--persist", f"{exc.path} is {_kind(path)}, not a regular file: {HINT}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise LockHeld(str(persist), int(holder) if holder.isdigit() else None) from None
    pid = f"{os.getpid()}\n".encode()
    with contextlib.suppress(OSError):  # the pid is for people: a full disk must not stop the writer
        os.pwrite(fd, pid, 0)  # over the old pid's bytes first: no new block needed
        os.ftruncate(fd, len(pid))
    return fd


HINT = "the lock file must be one (remove it, evesnap makes it)"


def _kind(path: Path) -> str:
    try:
        return kind_of(os.lstat(path).st_mode)
    except OSError as exc:
        return f"unusable ({exc.strerror})"

"""One writer per persist folder, and a persist folder only its owner can write."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from evesnap_core.durable import kind_of, open_regular
from evesnap_core.errors import ConfigError, LockHeld, UnsafePath

LOCK_FILE = "evesnap.lock"


def check_persist(persist: Path) -> None:
    """Refuse a persist folder others could write: they could plant state or volumes."""
    mode = persist.stat().st_mode & 0o777
    if mode & 0o022:
        raise ConfigError(
            "--persist",
            f"{persist} is writable by group or others (mode {mode:04o}); run: chmod 700 {persist}",
        )


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

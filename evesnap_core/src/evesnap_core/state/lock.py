"""One writer per persist folder, and a persist folder only its owner can write."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from evesnap_core.errors import ConfigError, LockHeld

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
    """
    path = persist / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise LockHeld(str(persist), int(holder) if holder.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd

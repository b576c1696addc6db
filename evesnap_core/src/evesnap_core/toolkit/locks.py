"""The per-volume lock every backend holds around every hook that touches a volume.

The concurrency rule (also in the hook specifications): the core may call hooks
for different volumes at the same time, from threads of one agent or from
several processes (the agent and a CLI command); a backend serialises the hooks
on one volume with this lock, which is an ``flock`` on a lock file, so it holds
across processes and is released by the kernel when a process dies. A hook that
cannot get the lock within `timeout` seconds raises VolumeLocked naming the
volume and the lock file; it never waits forever and never proceeds unlocked.

A lock file is removed on release once `gone()` says the volume no longer
exists, so a destroyed volume leaves no lock behind; a waiter that then holds
the lock on the removed file notices and locks the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from evesnap_core.durable import ensure_dir, open_regular
from evesnap_core.errors import VolumeLocked

LOCK_TIMEOUT = 120.0
"""The longest a hook waits for another operation on the same volume."""
POLL = 0.01
F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def volume_lock(
    path: Path,
    key: str,
    *,
    timeout: float = LOCK_TIMEOUT,
    gone: Callable[[], bool] | None = None,
) -> Iterator[None]:
    """Hold the exclusive lock file `path` of volume `key` (see the module)."""
    ensure_dir(path.parent)
    deadline = time.monotonic() + timeout
    while True:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o600)  # never through a planted link
        try:
            _acquire(fd, path, key, deadline)
            if not _same_file(fd, path):
                continue  # removed by the holder before us: lock the new file
            try:
                yield
            finally:
                if gone is not None and gone():
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            return
        finally:
            os.close(fd)


def _acquire(fd: int, path: Path, key: str, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise VolumeLocked(key, f"another evesnap operation holds {path}") from None
            time.sleep(POLL)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def serialised(hook: F) -> F:
    """Run a backend method under its backend's per-volume lock: the method's
    first argument (``volume``) is handed to ``self.lock_volume(volume)``, a
    context manager the backend defines (usually :func:`volume_lock`). Put it
    under ``@hookimpl``; pluggy still sees the method's own arguments."""

    @functools.wraps(hook)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        volume = kwargs["volume"] if "volume" in kwargs else args[0]
        with self.lock_volume(volume):
            return hook(self, *args, **kwargs)

    return cast(F, locked)

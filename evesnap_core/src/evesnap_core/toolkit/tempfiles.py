"""Temporary files and folders that never outlive the operation that made them.

A temporary is made beside its destination (same filesystem, so publishing it is
one rename) under a name that says it is one and which process made it:
``.<name>.<pid>.<random>.evesnap-tmp``. It is removed when the operation fails
(any exception, KeyboardInterrupt included), and :func:`sweep` removes those of
a process that is gone (a killed operation), so a backend that sweeps its
folders when it loads, or under a volume's lock, never accumulates them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from evesnap_core.durable import fsync_dir

SUFFIX = ".evesnap-tmp"
_NAME = re.compile(r"^\..*\.(?P<pid>[0-9]+)\.[0-9a-f]{12}" + re.escape(SUFFIX) + r"$")


def temp_path(dest: Path) -> Path:
    """A fresh temporary name beside `dest` (nothing is created)."""
    return dest.with_name(f".{dest.name[:80]}.{os.getpid()}.{secrets.token_hex(6)}{SUFFIX}")


def is_temporary(path: Path) -> bool:
    return _NAME.match(path.name) is not None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def temp_file(dest: Path) -> Iterator[Path]:
    """A temporary name beside `dest` for the caller to write and then
    :func:`publish`; whatever is still under that name on the way out (the
    operation failed, or never published) is removed."""
    tmp = temp_path(dest)
    try:
        yield tmp
    finally:
        _remove(tmp)


@contextlib.contextmanager
def temp_dir(dest: Path) -> Iterator[Path]:
    """A temporary folder (0700) beside `dest`, removed with its content on the
    way out unless it was published (renamed) meanwhile."""
    tmp = temp_path(dest)
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
    finally:
        _remove(tmp)


def publish(tmp: Path, dest: Path) -> None:
    """Give a finished temporary its real name, durably (the folder is fsynced).
    Callers decide under the volume's lock whether `dest` may be replaced."""
    tmp.replace(dest)
    fsync_dir(dest.parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(folder: Path) -> list[Path]:
    """Remove the temporaries in `folder` whose process is gone; return them."""
    removed: list[Path] = []
    try:
        paths = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for path in paths:
        match = _NAME.match(path.name)
        if match is None or _alive(int(match["pid"])):
            continue
        _remove(path)
        removed.append(path)
    if removed:
        fsync_dir(folder)
    return removed

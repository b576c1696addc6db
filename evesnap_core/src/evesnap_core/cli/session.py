"""Opening what a command needs: backends, runtime, store, orchestrator."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from evesnap_core.discovery import Registry, load_backends
from evesnap_core.durable import ensure_dir
from evesnap_core.errors import ConfigError, LockHeld
from evesnap_core.handler_types import ProgressCallback
from evesnap_core.orchestrator.content import ContentResolver
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.orchestrator.file_store import FileStore
from evesnap_core.runtimes.loader import load_runtime


@dataclass
class Session:
    persist: Path
    registry: Registry
    store: FileStore
    orchestrator: Orchestrator

    def app_uuid(self, name_or_uuid: str) -> UUID:
        """An app by its UUID or its display name."""
        apps = self.orchestrator.apps
        try:
            wanted = UUID(name_or_uuid)
        except ValueError:
            matches = [a.uuid for a in apps.values() if a.name == name_or_uuid]
            if len(matches) == 1:
                return matches[0]
            known = ", ".join(sorted(a.name or str(a.uuid) for a in apps.values())) or "none"
            what = "several apps are" if matches else "no app is"
            raise ConfigError("APP", f"{what} named {name_or_uuid!r} (apps: {known})") from None
        if wanted not in apps:
            raise ConfigError("APP", f"no app {wanted} (run 'evesnap status' to list apps)")
        return wanted


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
    """
    path = persist / "evesnap.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise LockHeld(str(persist), int(holder) if holder.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def open_session(
    persist: Path,
    runtime: str,
    base_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    write: bool = True,
) -> Session:
    """Everything a command needs; `write` commands hold the persist folder's lock."""
    ensure_dir(persist)
    check_persist(persist)
    if write:
        writer_lock(persist)
    registry = load_backends(persist)
    store = FileStore(persist)
    orchestrator = Orchestrator(
        registry,
        load_runtime(runtime, persist),
        ContentResolver(base_dir=base_dir or Path.cwd()),
        store=store,
        progress=progress,
        recover=write,
    )
    return Session(persist, registry, store, orchestrator)

"""Opening what a command needs: backends, runtime, store, orchestrator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from evesnap_core.discovery import Registry, load_backends
from evesnap_core.durable import confine, ensure_dir
from evesnap_core.errors import ConfigError
from evesnap_core.handler_types import ProgressCallback
from evesnap_core.orchestrator.content import ContentResolver
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.process import set_owner, wait_for_orphans
from evesnap_core.runtimes.loader import load_runtime
from evesnap_core.settings import (
    RUNTIME_DIR_ENV,
    content_roots,
    default_runtime_dir,
    default_volume_format,
)
from evesnap_core.state.lock import check_folder, check_persist, writer_lock
from evesnap_core.state.persist_store import PersistStore

hosted: Session | None = None
"""Inside the agent, while it runs a command for a client: the agent's own
session, which that command uses instead of opening one (and its lock)."""


@dataclass
class Session:
    persist: Path
    registry: Registry
    store: PersistStore
    orchestrator: Orchestrator

    def app_uuid(self, name_or_uuid: str) -> UUID:
        """An app by its UUID or its display name."""
        apps = dict(self.orchestrator.apps)  # a copy: the agent may add a clone meanwhile
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


def open_session(
    persist: Path,
    runtime: str,
    base_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    write: bool = True,
) -> Session:
    """Everything a command needs; `write` commands hold the persist folder's lock.

    Every write below the persist and runtime folders is confined to them from
    here on (`durable.confine`: never through a symbolic link)."""
    confine(persist, default_runtime_dir())
    ensure_dir(persist)
    check_persist(persist)
    runtime_dir = default_runtime_dir()
    if runtime_dir.exists():  # made (and checked) by whoever needs it first otherwise
        check_folder(runtime_dir, RUNTIME_DIR_ENV)
    tag = set_owner(persist)  # every child is marked as this process's
    if write:
        writer_lock(persist)
        wait_for_orphans(tag)  # a dead writer's half-done step ends before recovery looks
    registry = load_backends(persist)
    store = PersistStore(persist, writable=write)
    orchestrator = Orchestrator(
        registry,
        load_runtime(runtime, persist),
        ContentResolver(
            base_dir=base_dir or Path.cwd(), default_format=default_volume_format(), roots=content_roots()
        ),
        store=store,
        progress=progress,
        recover=write,
    )
    return Session(persist, registry, store, orchestrator)

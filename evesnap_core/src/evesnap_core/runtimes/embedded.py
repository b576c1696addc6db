"""The runtime for embedding: something else runs the apps.

The embedder tells evesnap what runs (`set_running`, `set_stopped`) and decides
whether evesnap may stop an app itself (`stopper`). Without a stopper, a stop
request is recorded (`stop_requested`) and the operation that needs the app
stopped waits for the next natural stop, as the reference does for deletions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from uuid import UUID

from evesnap_core.handler_types import LiveAttachment
from evesnap_core.runtime_hookspecs import AppRunState, AppSpec, runtime_hookimpl


class EmbeddedRuntime:
    def __init__(self, stopper: Callable[[UUID], bool] | None = None) -> None:
        self._lock = threading.Lock()
        self._running: dict[UUID, AppSpec | None] = {}
        self._attachments: dict[UUID, dict[str, LiveAttachment]] = {}
        self.stop_requested: set[UUID] = set()
        self.start_requested: dict[UUID, AppSpec] = {}
        self.stopper = stopper

    @classmethod
    def for_persist(cls, persist_dir: object) -> EmbeddedRuntime:
        """The entry-point factory: an embedded runtime has no files of its own."""
        del persist_dir
        return cls()

    # ------------------------------------------------------------ the embedder's side

    def set_running(self, app_id: UUID, attachments: Mapping[str, LiveAttachment] | None = None) -> None:
        with self._lock:
            self._running[app_id] = self.start_requested.pop(app_id, None)
            self._attachments[app_id] = dict(attachments or {})

    def set_stopped(self, app_id: UUID) -> None:
        with self._lock:
            self._running.pop(app_id, None)
            self._attachments.pop(app_id, None)
            self.stop_requested.discard(app_id)

    # ------------------------------------------------------------ hooks

    @runtime_hookimpl
    def evesnap_runtime_name(self) -> str:
        return "embedded"

    @runtime_hookimpl
    def evesnap_runtime_start(self, app: AppSpec) -> None:
        with self._lock:
            if app.uuid not in self._running:
                self.start_requested[app.uuid] = app

    @runtime_hookimpl
    def evesnap_runtime_stop(self, app_id: UUID, timeout: float) -> bool:
        del timeout
        with self._lock:
            if app_id not in self._running:
                return True
            self.stop_requested.add(app_id)
        if self.stopper is not None and self.stopper(app_id):
            self.set_stopped(app_id)
            return True
        return False

    @runtime_hookimpl
    def evesnap_runtime_state(self, app_id: UUID) -> AppRunState:
        with self._lock:
            return "running" if app_id in self._running else "stopped"

    @runtime_hookimpl
    def evesnap_runtime_attachments(self, app_id: UUID) -> Mapping[str, LiveAttachment]:
        with self._lock:
            return dict(self._attachments.get(app_id, {}))

    @runtime_hookimpl
    def evesnap_runtime_running_apps(self) -> Sequence[UUID]:
        with self._lock:
            return list(self._running)

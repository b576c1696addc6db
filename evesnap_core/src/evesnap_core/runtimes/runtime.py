"""A loaded runtime, called through pluggy like backends are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pluggy

from evesnap_core import runtime_hookspecs
from evesnap_core.errors import AppRuntimeError, EvesnapError
from evesnap_core.handler_types import LiveAttachment
from evesnap_core.runtime_hookspecs import AppRunState, AppSpec


class Runtime:
    """Typed calls into one runtime plugin."""

    def __init__(self, plugin: object) -> None:
        self.pm = pluggy.PluginManager(runtime_hookspecs.PROJECT)
        self.pm.add_hookspecs(runtime_hookspecs)
        self.pm.register(plugin)
        self.pm.check_pending()
        self.plugin = plugin
        self.name: str = self._call("evesnap_runtime_name")

    def _call(self, hook: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.pm.hook, hook)(**kwargs)
        except EvesnapError:
            raise
        except Exception as exc:
            raise AppRuntimeError(f"runtime failed in {hook}: {type(exc).__name__}: {exc}") from exc

    def start(self, app: AppSpec) -> None:
        self._call("evesnap_runtime_start", app=app)

    def stop(self, app_id: UUID, timeout: float = 30.0) -> bool:
        return bool(self._call("evesnap_runtime_stop", app_id=app_id, timeout=timeout))

    def state(self, app_id: UUID) -> AppRunState:
        result: AppRunState = self._call("evesnap_runtime_state", app_id=app_id)
        return result

    def attachments(self, app_id: UUID) -> Mapping[str, LiveAttachment]:
        return dict(self._call("evesnap_runtime_attachments", app_id=app_id) or {})

    def guest_agent(self, app_id: UUID) -> Path | None:
        """The socket of the app's guest-agent channel (None: it has none)."""
        found = self._call("evesnap_runtime_guest_agent", app_id=app_id)
        return Path(found) if found else None

    def running_apps(self) -> Sequence[UUID]:
        return list(self._call("evesnap_runtime_running_apps") or [])

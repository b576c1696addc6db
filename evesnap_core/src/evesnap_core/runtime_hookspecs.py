"""Hook specifications of an app runtime: what runs an app's VM.

The orchestrator touches an app's volumes offline only while the app is
stopped, and live only through what the runtime says holds them. A runtime
starts and stops apps, says whether one runs, and tells which volumes a running
app holds and how (a LiveAttachment: the QMP socket and the drive's node name),
so that backends with live snapshots can snapshot without any downtime.

Runtimes are plugins like backends, registered under the entry-point group
``evesnap.runtimes``; evesnap-core ships two: ``qemu`` (each app a real
qemu-system process) and ``embedded`` (something else runs the apps and tells
evesnap when one stopped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal
from uuid import UUID

import pluggy
from pydantic import BaseModel, ConfigDict

from evesnap_core.handler_types import LiveAttachment, VolumeHandle

PROJECT = "evesnap_runtime"
RUNTIME_GROUP = "evesnap.runtimes"

runtime_hookspec = pluggy.HookspecMarker(PROJECT)
runtime_hookimpl = pluggy.HookimplMarker(PROJECT)

AppRunState = Literal["running", "stopped", "crashed", "unknown"]
"""``crashed``: started and never stopped by evesnap, yet not running (its VM died)."""


class AppSpec(BaseModel):
    """What a runtime needs to run one app."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uuid: UUID
    name: str
    version: str
    volumes: tuple[VolumeHandle, ...]
    """In the order of the app's volumeRefList: the first is the boot disk."""
    memory_mb: int = 64


@runtime_hookspec(firstresult=True)
def evesnap_runtime_name() -> str:  # type: ignore[empty-body]
    """The runtime's name, as given to ``--runtime``."""


@runtime_hookspec(firstresult=True)
def evesnap_runtime_start(app: AppSpec) -> None:
    """Start `app` with its volumes attached; return once it runs. Idempotent."""


@runtime_hookspec(firstresult=True)
def evesnap_runtime_stop(app_id: UUID, timeout: float) -> bool:  # type: ignore[empty-body]
    """Stop the app; True once it is stopped, False if it could not stop within
    `timeout` (an embedding runtime may only ask its owner to stop it)."""


@runtime_hookspec(firstresult=True)
def evesnap_runtime_state(app_id: UUID) -> AppRunState:  # type: ignore[empty-body]
    """Whether the app runs now."""


@runtime_hookspec(firstresult=True)
def evesnap_runtime_attachments(app_id: UUID) -> Mapping[str, LiveAttachment]:  # type: ignore[empty-body]
    """For a running app: volume key (``uuid#generation``) -> how the VM holds it."""


@runtime_hookspec(firstresult=True)
def evesnap_runtime_running_apps() -> Sequence[UUID]:  # type: ignore[empty-body]
    """Apps this runtime runs now (after an agent restart, to adopt or stop them)."""


@runtime_hookspec(firstresult=True)
def evesnap_runtime_guest_agent(app_id: UUID) -> Path | None:
    """For a running app: the unix socket of its VM's guest-agent channel, or None
    (no channel; a runtime that does not implement this hook has none)."""

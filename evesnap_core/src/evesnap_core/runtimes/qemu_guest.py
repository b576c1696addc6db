"""The QEMU runtime's local guest setting (``EVESNAP_QEMU_GUEST``), read once per runtime.

A device-local choice, not the controller's: whether every app's VM gets a
guest-agent channel (for quiesced snapshots), and whether a Linux guest is
booted directly in it (kernel, initrd, command line, host folders over 9p), as
the guest VM harness (``contrib/guestvm``) does. The setting is a JSON file::

    {"guest_agent": true, "kernel": "/boot/vmlinuz-...", "initrd": "...",
     "append": "console=ttyS0 ...", "cpus": 1, "memory_mb": 256,
     "shares": [{"tag": "hostroot", "path": "/", "readonly": true}]}

An unreadable or invalid file is a ConfigError naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from evesnap_core.errors import ConfigError

GUEST_ENV = "EVESNAP_QEMU_GUEST"


class GuestShare(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tag: str
    path: Path
    readonly: bool = True


class GuestSettings(BaseModel):
    """``$EVESNAP_QEMU_GUEST``: how this device's QEMU runtime starts every app."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    guest_agent: bool = True
    """Give each app a guest-agent channel (``org.qemu.guest_agent.0``)."""
    kernel: Path | None = None
    """Boot this Linux kernel (no kernel: QEMU holds the volumes, no guest OS runs)."""
    initrd: Path | None = None
    append: str = ""
    cpus: int = 1
    memory_mb: int | None = None
    shares: tuple[GuestShare, ...] = ()
    console: bool = True
    """The guest's serial console into ``<app's run folder>/console.log``."""

    @classmethod
    def from_env(cls) -> GuestSettings | None:
        where = os.environ.get(GUEST_ENV, "")
        if not where:
            return None
        try:
            return cls.model_validate_json(Path(where).read_bytes())
        except (OSError, ValidationError) as exc:
            raise ConfigError(GUEST_ENV, f"{where}: {exc}") from exc

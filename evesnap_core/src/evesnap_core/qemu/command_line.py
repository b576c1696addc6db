"""The one qemu-system command line evesnap starts, built in one place.

Both the QEMU app runtime (`evesnap_core.runtimes.qemu`, an app's VM) and the
test launcher (`evesnap_core.testing.qemu_vm`) start QEMU the same way: no
defaults, no display, QMP monitors on unix sockets, daemonized with a pid file
(so that `process.run` returns once QEMU is fully up), and each disk a
``-blockdev`` (JSON, so that commas and other option syntax in a file name are
never parsed as QEMU options) behind a virtio-blk device with a known id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QEMU_SYSTEM = "qemu-system-x86_64"


@dataclass(frozen=True)
class Drive:
    """One disk: its ``-blockdev`` tree (whose top ``node-name`` the device uses)
    and the qdev id of its virtio-blk device."""

    blockdev: Mapping[str, Any]
    device_id: str

    @property
    def node_name(self) -> str:
        return str(self.blockdev["node-name"])


def command_line(
    name: str,
    *,
    accel: str,
    memory_mb: int,
    qmp_sockets: Sequence[Path],
    pidfile: Path,
    drives: Sequence[Drive],
) -> list[str]:
    """The argument list (no shell ever sees it) of a daemonized qemu-system."""
    argv = [
        QEMU_SYSTEM,
        "-name",
        name,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-accel",
        accel,
        "-m",
        str(memory_mb),
    ]
    for socket in qmp_sockets:
        argv += ["-qmp", f"unix:{socket},server=on,wait=off"]
    argv += ["-pidfile", str(pidfile), "-daemonize"]
    for drive in drives:
        argv += [
            "-blockdev",
            json.dumps(dict(drive.blockdev)),
            "-device",
            f"virtio-blk-pci,drive={drive.node_name},id={drive.device_id}",
        ]
    return argv

"""The one qemu-system command line evesnap starts, built in one place.

Both the QEMU app runtime (`evesnap_core.runtimes.qemu`, an app's VM) and the
test launcher (`evesnap_core.testing.qemu_vm`) start QEMU the same way: no
defaults, no display, QMP monitors on unix sockets, daemonized with a pid file
(so that `process.run` returns once QEMU is fully up), and each disk a
``-blockdev`` (JSON, so that commas and other option syntax in a file name are
never parsed as QEMU options) behind a virtio-blk device with a known id.

An app may also get a guest-agent channel: a virtio-serial port named
``org.qemu.guest_agent.0`` (the name ``qemu-ga`` in the guest opens by default)
whose host end is a unix socket QEMU listens on (`GUEST_AGENT_PORT`); and a
guest to boot (`GuestBoot`: kernel, initrd, command line, shared folders).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QEMU_SYSTEM = "qemu-system-x86_64"
GUEST_AGENT_PORT = "org.qemu.guest_agent.0"


@dataclass(frozen=True)
class Share:
    """A host folder the guest mounts over virtio-9p (``mount -t 9p -o trans=virtio TAG``)."""

    tag: str
    path: Path
    readonly: bool = True


@dataclass(frozen=True)
class GuestBoot:
    """A Linux guest booted directly (no firmware disk boot): what tests and
    benchmarks run inside an app's VM."""

    kernel: Path
    initrd: Path | None = None
    append: str = ""
    cpus: int = 1
    shares: tuple[Share, ...] = ()
    console: Path | None = None
    """Where the guest's serial console goes (a file), if anywhere."""


def _comma_free(value: str, what: str) -> str:
    if "," in value:
        raise ValueError(f"{what} {value!r} must not contain a comma (QEMU option syntax)")
    return value


def guest_agent_args(socket: Path) -> list[str]:
    """A virtio-serial guest-agent port whose host end listens on `socket`."""
    return [
        "-chardev",
        f"socket,id=qga0,path={_comma_free(str(socket), 'guest agent socket')},server=on,wait=off",
        "-device",
        "virtio-serial-pci,id=vserial0",
        "-device",
        f"virtserialport,bus=vserial0.0,chardev=qga0,name={GUEST_AGENT_PORT}",
    ]


def boot_args(boot: GuestBoot) -> list[str]:
    """Kernel, initrd, command line, 9p shares and serial console of a booted guest."""
    argv = ["-cpu", "max", "-smp", str(boot.cpus), "-kernel", str(boot.kernel)]
    if boot.initrd is not None:
        argv += ["-initrd", str(boot.initrd)]
    if boot.append:
        argv += ["-append", boot.append]
    for index, share in enumerate(boot.shares):
        path = _comma_free(str(share.path), "shared folder")
        ro = ",readonly=on" if share.readonly else ""
        argv += [
            "-fsdev",
            f"local,id=share{index},path={path},security_model=none,multidevs=remap{ro}",
            "-device",
            f"virtio-9p-pci,fsdev=share{index},mount_tag={_comma_free(share.tag, 'share tag')}",
        ]
    if boot.console is not None:
        argv += ["-serial", f"file:{_comma_free(str(boot.console), 'console file')}"]
    return argv


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
    guest_agent: Path | None = None,
    boot: GuestBoot | None = None,
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
    if guest_agent is not None:
        argv += guest_agent_args(guest_agent)
    if boot is not None:
        argv += boot_args(boot)
    return argv

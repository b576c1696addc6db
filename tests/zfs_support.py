"""What tests of apps on zvols share (inside the ZFS VM): the settings that put an
app's blank volumes on a fresh dataset of the test pool, and the app's bytes
written and read on the zvols' devices, outside evesnap."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from evesnap_core.cli.session import Session
from evesnap_zfs.harness import read_direct

from .support import MIB, VOL, VOL2


def zfs_settings(prefix: str) -> dict[str, str]:
    """Blank volumes as zvols under a dataset of their own, the other backends blocked."""
    return {
        "EVESNAP_VOLUME_FORMAT": "zvol",
        "EVESNAP_BLOCK_PLUGINS": "qcow2,purgeable,reflink",
        "EVESNAP_ZFS_POOL": os.environ.get("ZFSVM_POOL", "evesnaptest"),
        "EVESNAP_ZFS_PREFIX": f"{prefix}{uuid.uuid4().hex[:8]}",
    }


def device(session: Session, volume: str) -> str:
    record = next(v for v in session.orchestrator.volumes.values() if str(v.spec.uuid) == volume)
    assert record.handle is not None
    return "/dev/zvol/" + record.handle.location


def put(session: Session, value: int) -> None:
    """The app's state: byte `value` on its first zvol, `value + 100` on its second."""
    for volume, byte in ((VOL, value), (VOL2, value + 100)):
        fd = os.open(device(session, volume), os.O_WRONLY)
        try:
            os.pwrite(fd, bytes([byte]) * MIB, 0)
            os.fsync(fd)
        finally:
            os.close(fd)


def read(path: str) -> int:
    """The one byte value a device holds in its first MiB (O_DIRECT: no cache can lie)."""
    data = read_direct(Path(path), 0, MIB)
    assert len(set(data)) == 1, f"{path} holds mixed bytes"
    return data[0]


def state(session: Session) -> tuple[int, int]:
    return read(device(session, VOL)), read(device(session, VOL2))

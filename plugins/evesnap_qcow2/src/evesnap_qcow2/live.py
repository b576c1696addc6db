"""Snapshots of images a running QEMU holds, over QMP: no pause, no qemu-img.

``blockdev-snapshot-internal-sync`` takes an internal snapshot of one format
node without stopping the guest; a ``transaction`` of several is atomic (all
or none); ``blockdev-snapshot-delete-internal-sync`` deletes one.

Fault points (``evesnap_core.crashpoints``; with ``EVESNAP_KILL_AT`` the test
kills the VM's QEMU there): ``qcow2.live.connect`` before the monitor is
reached, ``qcow2.live.transaction`` with the monitor connected and the
transaction about to go, ``qcow2.live.delete`` likewise for a deletion.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evesnap_core import SnapshotNotFound, VolumeHandle
from evesnap_core.errors import AppRuntimeError
from evesnap_core.toolkit import QmpClient, QmpDisconnected, QmpError, crashpoint


def _socket(volumes: Sequence[VolumeHandle]) -> Path:
    sockets = {v.attachment.qmp_socket for v in volumes if v.attachment is not None}
    if len(sockets) != 1 or any(v.attachment is None for v in volumes):
        raise ValueError("a live group must be held by one running VM")
    return sockets.pop()


def _gone(volumes: Sequence[VolumeHandle], what: str, exc: QmpDisconnected) -> AppRuntimeError:
    """The error of a VM that died (or quit) under a live operation, naming it."""
    vm = next((v.attachment.vm for v in volumes if v.attachment is not None and v.attachment.vm), "")
    keys = ", ".join(v.key for v in volumes)
    return AppRuntimeError(
        f"the VM {'of app ' + vm if vm else 'holding ' + keys} is gone (its QEMU died or quit) "
        f"during the live {what} of {keys}: {exc.command}: {exc.detail}"
    )


def snapshot_group(volumes: Sequence[tuple[VolumeHandle, str]]) -> None:
    """Snapshot every (volume, tag) in ONE QMP transaction: all or none.

    A VM that dies meanwhile is an AppRuntimeError naming it; whether the
    transaction landed first is for the caller to look up in the images."""
    handles = [v for v, _ in volumes]
    sock = _socket(handles)
    actions = [
        {"type": "blockdev-snapshot-internal-sync", "data": {"device": node, "name": tag}}
        for node, tag in ((v.attachment.node_name if v.attachment else "", t) for v, t in volumes)
    ]
    crashpoint("qcow2.live.connect")
    try:
        with QmpClient(sock) as qmp:  # bounded waits: a busy monitor is an error, not a hang
            crashpoint("qcow2.live.transaction")
            qmp.transaction(actions)
    except QmpDisconnected as exc:
        raise _gone(handles, "snapshot", exc) from exc


def delete(volume: VolumeHandle, tag: str) -> None:
    sock = _socket([volume])
    assert volume.attachment is not None
    node = volume.attachment.node_name
    try:
        with QmpClient(sock) as qmp:
            crashpoint("qcow2.live.delete")
            qmp.command("blockdev-snapshot-delete-internal-sync", {"device": node, "name": tag})
    except QmpDisconnected as exc:
        raise _gone([volume], "deletion", exc) from exc
    except QmpError as exc:
        if "not found" in exc.detail.lower() or "can't find" in exc.detail.lower():
            raise SnapshotNotFound(tag, volume.key) from exc
        raise

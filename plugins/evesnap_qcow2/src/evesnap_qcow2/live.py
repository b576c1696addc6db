"""Snapshots of images a running QEMU holds, over QMP: no pause, no qemu-img.

``blockdev-snapshot-internal-sync`` takes an internal snapshot of one format
node without stopping the guest; a ``transaction`` of several is atomic (all
or none); ``blockdev-snapshot-delete-internal-sync`` deletes one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evesnap_core import SnapshotNotFound, VolumeHandle
from evesnap_core.qemu import QmpClient
from evesnap_core.qmp import QmpError


def _socket(volumes: Sequence[VolumeHandle]) -> Path:
    sockets = {v.attachment.qmp_socket for v in volumes if v.attachment is not None}
    if len(sockets) != 1 or any(v.attachment is None for v in volumes):
        raise ValueError("a live group must be held by one running VM")
    return sockets.pop()


def snapshot_group(volumes: Sequence[tuple[VolumeHandle, str]]) -> None:
    """Snapshot every (volume, tag) in ONE QMP transaction: all or none."""
    sock = _socket([v for v, _ in volumes])
    actions = [
        {"type": "blockdev-snapshot-internal-sync", "data": {"device": node, "name": tag}}
        for node, tag in ((v.attachment.node_name if v.attachment else "", t) for v, t in volumes)
    ]
    with QmpClient(sock) as qmp:  # bounded waits: a busy monitor is an error, not a hang
        qmp.transaction(actions)


def delete(volume: VolumeHandle, tag: str) -> None:
    sock = _socket([volume])
    assert volume.attachment is not None
    node = volume.attachment.node_name
    with QmpClient(sock) as qmp:
        try:
            qmp.command("blockdev-snapshot-delete-internal-sync", {"device": node, "name": tag})
        except QmpError as exc:
            if "not found" in exc.detail.lower() or "can't find" in exc.detail.lower():
                raise SnapshotNotFound(tag, volume.key) from exc
            raise

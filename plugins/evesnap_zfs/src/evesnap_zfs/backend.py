"""The ZFS zvol backend."""

from __future__ import annotations

from typing import Any

from evesnap_core import (
    BackendContext,
    BackendInfo,
    BackendUnavailable,
    VolumeDetails,
    VolumeHandle,
    VolumeSpec,
    hookimpl,
)
from evesnap_core.process import run
from evesnap_zfs.libzfs import load_libzfs_core

NAME = "zfs"
PLUGIN_API_VERSION = 1


class ZfsBackend:
    """Serves zvols ``<pool>/<prefix>/volumes/<uuid>.<generation>``."""

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.lzc, self.unavailable_reason = load_libzfs_core()

    @hookimpl
    def evesnap_backend_info(self) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            plugin_api_version=PLUGIN_API_VERSION,
            capabilities=frozenset(),
            formats=("zvol",),
            available=self.lzc is not None,
            unavailable_reason=self.unavailable_reason,
            description="ZFS zvols through libzfs_core",
        )

    @hookimpl
    def evesnap_claim_volume(self, volume: VolumeSpec) -> bool | None:
        return True if volume.format == "zvol" and not volume.purgeable else None

    # ------------------------------------------------------------ volumes

    def _require_lzc(self) -> Any:
        if self.lzc is None:
            raise BackendUnavailable(NAME, self.unavailable_reason)
        return self.lzc

    @hookimpl
    def evesnap_destroy_volume(self, volume: VolumeHandle) -> None:
        """Destroy the zvol and its snapshots; a missing zvol is already destroyed."""
        lzc = self._require_lzc()
        name = volume.location.encode()
        if not lzc.lzc_exists(name):
            return
        snaps = run(["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", volume.location])
        names = [line.encode() for line in snaps.stdout.decode().split()]
        if names:
            lzc.lzc_destroy_snaps(names, defer=False)
        lzc.lzc_destroy(name)

    @hookimpl
    def evesnap_volume_details(self, volume: VolumeHandle) -> VolumeDetails:
        self._require_lzc()
        out = run(["zfs", "get", "-Hp", "-o", "property,value", "volsize,used", volume.location])
        props = dict(line.split("\t", 1) for line in out.stdout.decode().splitlines())
        return VolumeDetails(
            handle=volume,
            format="zvol",
            virtual_size=int(props["volsize"]),
            actual_size=int(props["used"]),
        )

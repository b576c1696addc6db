"""The conformance harness of the in-memory backend (evesnap_core.testing.memory):
the suite drives it like any backend, reading and writing bytes through the
shared MemoryDisk, never through the backend's hooks.

The backend is not an installed distribution (an agent must never find it), so
the harness loads it as an ``extra`` beside the installed backends, which it
blocks. Its disk is what it keeps, so the leftover cases list the disk's
entries; it cannot provide what needs its state outside this process (a NEW
process finds nothing) or a volume QEMU can open (the live cases): those are
declared not provided, and their cases are skipped naming them. NoSpace runs
on a disk of small capacity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import ClassVar

from evesnap_core.backend import Backend
from evesnap_core.discovery import load_backends
from evesnap_core.handler_types import Capability, VolumeHandle
from evesnap_core.testing.conformance.harness import MIB, Harness
from evesnap_core.testing.conformance.requirements import Requirements
from evesnap_core.testing.memory import SUPPORTED, MemoryBackend, MemoryConfig
from evesnap_core.testing.memory_disk import MemoryDisk


class MemoryRequirements(Requirements):
    state_outlives_process = False
    """Its state is objects of this process: a new process finds nothing."""
    volumes_attach_to_qemu = False
    """Its volumes are bytes in this process: no QEMU can open them."""


class MemoryHarness(Harness):
    """Every capability the memory backend has, snapshots copy-on-write."""

    backend_name = "memory"
    volume_format = "raw"
    requirements = MemoryRequirements
    config: ClassVar[MemoryConfig] = MemoryConfig(name="memory", formats=("raw",), capabilities=SUPPORTED)
    backend_class: ClassVar[type[MemoryBackend]] = MemoryBackend
    """What load() builds (a deliberately broken subclass, to see the suite fail)."""
    small_capacity: ClassVar[int] = 4 * MIB

    def __init__(self, workdir: Path, disk: MemoryDisk | None = None) -> None:
        super().__init__(workdir)
        self.disk = disk or MemoryDisk()

    def environ(self) -> Mapping[str, str]:
        """Only the memory backend: every installed one is blocked (not imported)."""
        installed = {ep.name for ep in metadata.entry_points(group="evesnap.volume_handlers")}
        return {"EVESNAP_BLOCK_PLUGINS": ",".join(sorted(installed - {self.config.name}))}

    def load(self) -> Backend:
        """A NEW backend object around the same disk, as after a restart."""
        factory = self.backend_class.factory(self.config, self.disk)
        registry = load_backends(self.persist, environ=self.environ(), extra=[(self.config.name, factory)])
        return registry.get(self.config.name)

    def write(self, volume: VolumeHandle, offset: int, data: bytes) -> None:
        self.disk.write(volume.key, offset, data)

    def read(self, volume: VolumeHandle, offset: int, length: int) -> bytes:
        return self.disk.read(volume.key, offset, length)

    def backend_files(self) -> set[str]:
        """What the disk holds (volumes, snapshots, records) and any file the
        backend made under the persist folder (it should make none)."""
        return {f"memory: {name}" for name in self.disk.entries()} | super().backend_files()

    def backend_file_sizes(self) -> dict[str, int]:
        return {f"memory: {name}": size for name, size in self.disk.entries().items()}

    @contextlib.contextmanager
    def on_small_filesystem(self) -> Iterator[Harness | None]:
        """A harness of the same kind on a new disk of ``small_capacity`` bytes."""
        small = type(self)(self.workdir / "small", MemoryDisk(capacity=self.small_capacity))
        try:
            yield small
        finally:
            small.cleanup()

    def free_bytes(self) -> int:
        return self.disk.free()


class FullCopyMemoryHarness(MemoryHarness):
    """The other branches: whole-copy snapshots that outlive destroy_volume,
    rollback of the latest only, no clone and no atomic group."""

    backend_name = "memory-full"
    config = MemoryConfig(
        name="memory-full",
        formats=("raw",),
        capabilities=SUPPORTED - {Capability.ROLLBACK_ANY, Capability.CLONE, Capability.ATOMIC_GROUP},
        retain_after_destroy=True,
    )

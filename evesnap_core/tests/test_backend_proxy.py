"""The Backend proxy's own logic: capability enforcement, bug wrapping, group
fallback. The in-memory backend (evesnap_core.testing.memory) is enough here: no
storage is involved."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from evesnap_core import (
    Capability,
    LiveAttachment,
    NoBackendFor,
    NotSupported,
    VolumeLocked,
    VolumeNotFound,
    VolumeSpec,
)
from evesnap_core.discovery import load_backends
from evesnap_core.errors import BackendBug
from evesnap_core.testing.memory import MemoryBackend, MemoryConfig
from evesnap_core.testing.memory_disk import MemoryDisk

MEMORY = MemoryConfig(
    formats=("mem",),
    capabilities=frozenset({Capability.SNAPSHOT, Capability.CREATE_VOLUME, Capability.ROLLBACK_ANY}),
)
"""Snapshots and offline rollback only: what the proxy refuses is everything else."""


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[Any, MemoryDisk]:
    disk = MemoryDisk()
    registry = load_backends(tmp_path, extra=[("memory", MemoryBackend.factory(MEMORY, disk))], environ={})
    return registry.get("memory"), disk


def spec() -> VolumeSpec:
    return VolumeSpec(uuid=uuid.uuid4(), format="mem", size_bytes=1)


def test_undeclared_capability_never_reaches_the_backend(loaded: Any) -> None:
    backend, _ = loaded
    volume = backend.create_volume(spec())
    with pytest.raises(NotSupported, match="clone"):
        backend.clone(volume, "s", spec())
    with pytest.raises(NotSupported, match="read_only"):
        backend.open_snapshot(volume, "s", "/tmp")


def test_attached_volume_needs_live_capabilities(loaded: Any) -> None:
    backend, _ = loaded
    volume = backend.create_volume(spec())
    backend.snapshot(volume, "s")  # offline: fine
    live = volume.attached(LiveAttachment(qmp_socket=Path("/nonexistent"), node_name="n"))
    with pytest.raises(NotSupported, match="live_snapshot"):
        backend.snapshot(live, "s")
    with pytest.raises(NotSupported, match="live_delete"):
        backend.delete_snapshot(live, "s")
    with pytest.raises(VolumeLocked):
        backend.rollback(live, "s")
    check = backend.rollback_check(live, "s")
    assert check.needs_stop and not check.possible


def test_untyped_exception_becomes_a_backend_bug(loaded: Any) -> None:
    backend, disk = loaded
    volume = backend.create_volume(spec())
    disk.fail("snapshot", error=KeyError("oops"))
    with pytest.raises(BackendBug, match=r"'memory' failed in evesnap_snapshot_volume: KeyError"):
        backend.snapshot(volume, "s")


def test_group_fallback_undoes_a_partial_group(loaded: Any) -> None:
    backend, disk = loaded
    a, b, c = (backend.create_volume(spec()) for _ in range(3))
    disk.fail("snapshot", c.key)
    with pytest.raises(VolumeNotFound):
        backend.snapshot_group([a, b, c], "g")
    assert backend.list_snapshots(a) == [] and backend.list_snapshots(b) == []
    infos = backend.snapshot_group([a, b], "g")
    assert [i.volume for i in infos] == [a.uuid, b.uuid]


def test_claim_picks_the_backend_or_says_none_claims(tmp_path: Path) -> None:
    memory = MemoryBackend.factory(MEMORY, MemoryDisk())
    registry = load_backends(tmp_path, extra=[("memory", memory)], environ={})
    assert registry.claim(spec()).name == "memory"
    with pytest.raises(NoBackendFor, match="no bundled backend makes blank nosuchformat volumes"):
        registry.claim(VolumeSpec(uuid=uuid.uuid4(), format="nosuchformat"))
    # the message names the distribution (and the extra) that would serve the volume
    registry = load_backends(tmp_path, environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,zfs,purgeable,reflink"})
    with pytest.raises(NoBackendFor, match=r"evesnap-purgeable: pip install 'evesnap-core\[purgeable\]'"):
        registry.claim(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", purgeable=True))
    with pytest.raises(NoBackendFor, match=r"evesnap-zfs: pip install 'evesnap-core\[zfs\]'"):
        registry.claim(VolumeSpec(uuid=uuid.uuid4(), format="zvol"))


def test_block_list_applies_to_builtin_backends_too(tmp_path: Path) -> None:
    memory = MemoryBackend.factory(MEMORY, MemoryDisk())
    registry = load_backends(
        tmp_path, extra=[("memory", memory)], environ={"EVESNAP_BLOCK_PLUGINS": "memory"}
    )
    assert "memory" not in registry.backends
    assert registry.records["memory"].status == "blocked"

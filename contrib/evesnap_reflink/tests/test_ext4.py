"""On a filesystem without reflink (ext4) the backend is unavailable and says why.

The documented choice (README.md): no silent fallback to full copies, whose
cost (a full volume's space and minutes of I/O per snapshot) nobody asked for.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core import BackendUnavailable, NoBackendFor, VolumeHandle, VolumeSpec
from evesnap_core.testing.conformance import load_backends
from evesnap_reflink.scratchfs import scratch_fs

MIB = 1024 * 1024


@pytest.fixture
def ext4_root(tmp_path: Path) -> Iterator[Path]:
    with scratch_fs("ext4", size=64 * MIB, parent=tmp_path) as root:
        yield root


def test_on_ext4_the_backend_is_unavailable_naming_the_filesystem(ext4_root: Path) -> None:
    persist = ext4_root / "persist"
    registry = load_backends(persist, environ={})
    record = registry.records["reflink"]
    assert record.status == "unavailable"
    assert "ext4" in record.error and "reflink" in record.error and "XFS" in record.error, record.error
    assert not persist.exists(), "loading an unavailable backend created its folders"

    backend = registry.get("reflink")
    raw = VolumeSpec(uuid=uuid.uuid4(), format="raw", size_bytes=MIB)
    with pytest.raises(BackendUnavailable, match="ext4"):
        backend.create_volume(raw)
    handle = VolumeHandle(
        uuid=raw.uuid, generation=0, backend="reflink", format="raw", location="/nonexistent"
    )
    with pytest.raises(BackendUnavailable):
        backend.snapshot(handle, "s1")
    with pytest.raises(NoBackendFor, match=r"no backend for volume .*available here: "):
        registry.claim(raw)
    with pytest.raises(BackendUnavailable, match="ext4"):
        registry.claim(raw.model_copy(update={"backend": "reflink"}))

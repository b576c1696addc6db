"""populate_volume from real raw and qcow2 content images (made with qemu-img and
qemu-io); the volume's bytes are checked with plain reads, outside the backend."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core import AlreadyExists, ContentSource, FormatError, NoSpace, VolumeSpec
from evesnap_core.testing.conformance import Backend
from evesnap_core.toolkit import run
from evesnap_reflink.harness import ReflinkHarness
from evesnap_reflink.scratchfs import scratch_fs

MIB = 1024 * 1024


def qcow2_with_data(path: Path, virtual: int, writes: list[tuple[int, int, int]]) -> Path:
    """A qcow2 image holding byte value `value` over (offset, length) for each write."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(virtual)])
    for offset, length, value in writes:
        run(["qemu-io", "-f", "qcow2", "-c", f"write -P {value} {offset} {length}", str(path)])
    return path


def expected_bytes(size: int, writes: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(size)
    for offset, length, value in writes:
        data[offset : offset + length] = bytes([value]) * length
    return bytes(data)


def spec(size: int) -> VolumeSpec:
    """A content volume as the core asks for one: purgeable, naming this backend."""
    return VolumeSpec(uuid=uuid.uuid4(), format="raw", size_bytes=size, purgeable=True, backend="reflink")


def stored_volumes(harness: ReflinkHarness) -> list[str]:
    """Volume folders and temporaries (a failed populate must leave none)."""
    folder = harness.persist / "reflink" / "volumes"
    return os.listdir(folder) if folder.exists() else []


@pytest.fixture
def backend(reflink_harness: ReflinkHarness) -> Backend:
    return reflink_harness.load()


WRITES = [(0, MIB, 0x11), (3 * MIB, 512 * 1024, 0x22), (7 * MIB, 4096, 0x33)]


def test_qcow2_content_is_converted_to_the_exact_bytes(
    reflink_harness: ReflinkHarness, backend: Backend, tmp_path: Path
) -> None:
    image = qcow2_with_data(tmp_path / "content.qcow2", 8 * MIB, WRITES)
    progress: list[tuple[int, int]] = []
    volume = backend.populate_volume(
        spec(4 * MIB),
        ContentSource(path=image, format="qcow2"),
        lambda d, t: progress.append((d, t)),
    )
    data = Path(volume.location).read_bytes()
    assert len(data) == 8 * MIB, "the image is larger than the spec: its size wins"
    assert data == expected_bytes(8 * MIB, WRITES)
    assert progress[-1][0] == progress[-1][1] > 0
    assert os.stat(volume.location).st_blocks * 512 < 4 * MIB, "zeros should stay holes"


def test_raw_content_on_the_same_filesystem_is_reflinked_and_independent(
    reflink_harness: ReflinkHarness, backend: Backend
) -> None:
    image = reflink_harness.persist / "content.raw"
    image.write_bytes(expected_bytes(2 * MIB, [(0, MIB, 0x44)]))
    volume = backend.populate_volume(spec(6 * MIB), ContentSource(path=image, format="raw"))
    assert Path(volume.location).read_bytes() == expected_bytes(6 * MIB, [(0, MIB, 0x44)])
    reflink_harness.write(volume, 0, b"\x55" * 4096)
    assert image.read_bytes()[:4096] == b"\x44" * 4096, "writing the volume changed its content image"


def test_raw_content_on_another_filesystem_is_copied(
    reflink_harness: ReflinkHarness, backend: Backend, tmp_path: Path
) -> None:
    image = tmp_path / "content.raw"  # tmp_path is not on the session's XFS
    image.write_bytes(expected_bytes(3 * MIB, [(MIB, MIB, 0x66)]))
    volume = backend.populate_volume(spec(MIB), ContentSource(path=image, format="raw"))
    assert Path(volume.location).read_bytes() == image.read_bytes()


def test_populate_is_idempotent(reflink_harness: ReflinkHarness, backend: Backend, tmp_path: Path) -> None:
    image = qcow2_with_data(tmp_path / "content.qcow2", 2 * MIB, [(0, 4096, 0x77)])
    source = ContentSource(path=image, format="qcow2")
    wanted = spec(MIB)
    first = backend.populate_volume(wanted, source)
    assert backend.populate_volume(wanted, source) == first
    with pytest.raises(AlreadyExists):
        backend.populate_volume(wanted.model_copy(update={"size_bytes": 4 * MIB}), source)


def test_a_raw_file_claimed_to_be_qcow2_is_a_format_error(
    reflink_harness: ReflinkHarness, backend: Backend, tmp_path: Path
) -> None:
    image = tmp_path / "not.qcow2"
    image.write_bytes(b"\0" * MIB)
    with pytest.raises(FormatError, match="not a valid qcow2"):
        backend.populate_volume(spec(MIB), ContentSource(path=image, format="qcow2"))
    assert stored_volumes(reflink_harness) == []


def test_a_qcow2_with_a_backing_file_is_refused(
    reflink_harness: ReflinkHarness, backend: Backend, tmp_path: Path
) -> None:
    base = qcow2_with_data(tmp_path / "base.qcow2", MIB, [(0, 4096, 0x01)])
    overlay = tmp_path / "overlay.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)])
    with pytest.raises(FormatError, match="backing file"):
        backend.populate_volume(spec(MIB), ContentSource(path=overlay, format="qcow2"))


@pytest.fixture
def small_xfs(tmp_path: Path) -> Iterator[Path]:
    with scratch_fs("xfs", size=320 * MIB, parent=tmp_path) as root:
        yield root


def test_content_larger_than_the_free_space_is_no_space_before_writing(
    small_xfs: Path, tmp_path: Path
) -> None:
    harness = ReflinkHarness.on(small_xfs)(tmp_path / "work")
    try:
        backend = harness.load()
        free_before = os.statvfs(small_xfs).f_bavail
        image = qcow2_with_data(tmp_path / "big.qcow2", 512 * MIB, [(0, 400 * MIB, 0x5A)])
        with pytest.raises(NoSpace) as no_space:
            backend.populate_volume(spec(MIB), ContentSource(path=image, format="qcow2"))
        assert no_space.value.needed >= 400 * MIB
        assert stored_volumes(harness) == []
        written = (free_before - os.statvfs(small_xfs).f_bavail) * os.statvfs(small_xfs).f_frsize
        assert written < MIB, f"{written} bytes were written before the space check"
    finally:
        harness.cleanup()

"""Snapshot, rollback and clone of a full volume through the reflink backend,
side by side with a plain copy of the same file on the same filesystem.

Run as root (it makes a scratch XFS): ``python benchmarks/snapshot_vs_copy.py [GiB]``.
Prints times and the ratio copy / operation; nothing is asserted. Everything is
on disk before each timing starts (``sync``), and the copy is fsynced like the
backend's reflinks are: FICLONE first writes back the file's dirty pages, so a
snapshot right after heavy writes also pays for that writeback.
"""

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from evesnap_core import VolumeSpec
from evesnap_core.testing.conformance import load_backends
from evesnap_reflink.scratchfs import scratch_fs

GIB = 1024**3


def timed(action: Callable[[], object]) -> float:
    os.sync()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def volume_spec(size: int) -> VolumeSpec:
    return VolumeSpec(uuid=uuid.uuid4(), format="raw", size_bytes=size)


def durable_copy(source: str, target: Path) -> None:
    shutil.copyfile(source, target)
    with open(target, "rb") as f:
        os.fsync(f.fileno())


def main(gib: int) -> None:
    size = gib * GIB
    with tempfile.TemporaryDirectory() as tmp, scratch_fs("xfs", 3 * size + GIB, Path(tmp)) as root:
        backend = load_backends(root / "persist", environ={}).get("reflink")
        volume = backend.create_volume(volume_spec(size))
        with open(volume.location, "r+b") as f:  # every byte allocated, as after heavy use
            chunk = bytes(range(256)) * 4096
            for _ in range(size // len(chunk)):
                f.write(chunk)
        copy = Path(volume.location).with_name("plain-copy.raw")
        results = {
            "plain copy + fsync": timed(lambda: durable_copy(volume.location, copy)),
            "snapshot": timed(lambda: backend.snapshot(volume, "s1")),
            "rollback": timed(lambda: backend.rollback(volume, "s1")),
            "clone": timed(lambda: backend.clone(volume, "s1", volume_spec(size))),
        }
        base = results["plain copy + fsync"]
        print(f"{gib} GiB volume, fully written, on XFS (loop)")
        for name, seconds in results.items():
            print(f"  {name:20} {seconds * 1000:10.1f} ms   copy/this = {base / seconds:8.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)

"""Snapshot time of a purgeable volume at 1, 16 and 64 GiB, side by side in one
run, on real ext4 and XFS loop filesystems: the snapshot a purge takes keeps
the old generation (a rename, no copy), so its time must stay flat whatever the
size. For scale, the same run times an immediate snapshot (a reflink on XFS)
and a plain copy of 1 GiB of written data.

Volumes are allocated with fallocate (every block reserved on the filesystem,
nothing written to the host disk); --written writes every byte instead (needs
that much host disk and time). Needs root (loop devices).

    .venv/bin/python benchmarks/purgeable_snapshot.py [--sizes 1,16,64] [--reps 5]
        [--filesystems ext4,xfs] [--written]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import cast

from evesnap_core import VolumeHandle, VolumeSpec
from evesnap_core.backend import Backend
from evesnap_core.discovery import load_backends
from evesnap_core.process import run
from evesnap_core.testing.loopfs import Kind, loop_filesystem, loop_unavailable_reason

GIB = 1 << 30
CHUNK = 64 << 20


def fill(path: str, size: int, written: bool) -> None:
    if not written:
        run(["fallocate", "-l", str(size), path], timeout=600)
        return
    block = os.urandom(CHUNK)
    with open(path, "r+b") as f:
        for _ in range(size // CHUNK):
            f.write(block)
        os.fsync(f.fileno())


def new_volume(backend: Backend, size: int, written: bool) -> VolumeHandle:
    volume = backend.create_volume(
        VolumeSpec(uuid=uuid.uuid4(), format="raw", size_bytes=size, purgeable=True, backend="purgeable")
    )
    fill(volume.location, size, written)
    return volume


def timed_snapshot(backend: Backend, size: int, written: bool, retiring: bool) -> float:
    volume = new_volume(backend, size, written)
    start = time.perf_counter()
    backend.snapshot(volume, "bench", retiring=retiring)
    elapsed = time.perf_counter() - start
    backend.delete_snapshot(volume, "bench")
    backend.destroy_volume(volume)
    return elapsed


def bench_filesystem(kind: Kind, sizes: list[int], reps: int, written: bool) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="evesnap-pg-", dir="/var/tmp") as tmp,
        loop_filesystem(kind, (max(sizes) + 4) * GIB, Path(tmp)) as mount,
    ):
        backend = load_backends(mount, environ={}).get("purgeable")
        retiring: dict[int, list[float]] = {s: [] for s in sizes}
        for _ in range(reps):
            for size in sizes:  # interleaved: every size sees the same machine state
                retiring[size].append(timed_snapshot(backend, size * GIB, written, retiring=True))
        base = statistics.median(retiring[sizes[0]])
        print(f"\n{kind}: snapshot at a purge (retiring), median of {reps}")
        for size in sizes:
            median = statistics.median(retiring[size])
            print(f"  {size:>4} GiB  {median * 1e3:8.2f} ms   x{median / base:5.2f} of {sizes[0]} GiB")
        immediate = statistics.median(timed_snapshot(backend, GIB, True, retiring=False) for _ in range(3))
        source = new_volume(backend, GIB, True).location
        start = time.perf_counter()
        run(["cp", "--reflink=never", source, source + ".copy"], timeout=600)
        os.sync()
        plain = time.perf_counter() - start
        print(f"  for scale, 1 GiB written: immediate snapshot {immediate * 1e3:.1f} ms,", end="")
        print(f" plain copy (cp --reflink=never, then sync) {plain * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64", help="GiB, comma-separated")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--filesystems", default="ext4,xfs")
    parser.add_argument("--written", action="store_true", help="write every byte instead of fallocate")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for name in args.filesystems.split(","):
        kind = cast(Kind, name)
        reason = loop_unavailable_reason(kind)
        if reason is not None:
            raise SystemExit(f"cannot make a {kind} loop filesystem: {reason}")
        bench_filesystem(kind, sizes, args.reps, args.written)


if __name__ == "__main__":
    main()

"""Snapshot time of a purgeable volume at 1, 16 and 64 GiB of allocated data,
side by side in one run: the snapshot a purge takes keeps the old generation
(no copy), so its time must stay flat whatever the size. A plain copy of the
smallest size is printed for scale.

    .venv/bin/python benchmarks/purgeable_snapshot.py [--sizes 1,16,64] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from evesnap_core import VolumeSpec
from evesnap_core.discovery import load_backends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64", help="GiB")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="evesnap-pg-", dir="/var/tmp") as tmp:
        backend = load_backends(Path(tmp), environ={}).get("purgeable")
        results: dict[int, list[float]] = {s: [] for s in sizes}
        for rep in range(args.reps):
            for size in sizes:  # interleaved: every size sees the same machine state
                volume = backend.create_volume(
                    VolumeSpec(
                        uuid=uuid.uuid4(), format="raw", size_bytes=0, purgeable=True, backend="purgeable"
                    )
                )
                subprocess.run(["fallocate", "-l", f"{size}G", volume.location], check=True)
                start = time.perf_counter()
                backend.snapshot(volume, f"purge-{rep}", retiring=True)
                results[size].append(time.perf_counter() - start)
                backend.delete_snapshot(volume, f"purge-{rep}")
        small = Path(tmp) / "copy-src"
        subprocess.run(["fallocate", "-l", f"{sizes[0]}G", str(small)], check=True)
        start = time.perf_counter()
        subprocess.run(["cp", "--reflink=never", str(small), str(small) + ".copy"], check=True)
        copy_time = time.perf_counter() - start
        base = statistics.median(results[sizes[0]])
        print(f"purgeable snapshot at a purge (retiring), {args.reps} repetitions, medians")
        for size in sizes:
            median = statistics.median(results[size])
            print(f"{size:>4} GiB  {median * 1000:7.2f} ms   x{median / base:.2f} of {sizes[0]} GiB")
        print(f"plain copy of {sizes[0]} GiB for scale: {copy_time * 1000:.0f} ms")


if __name__ == "__main__":
    main()

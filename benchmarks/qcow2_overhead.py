"""evesnap-qcow2 against the bare qemu-img commands, side by side in one run.

For create, list, rollback and delete of an internal snapshot on the same image
(1 GiB allocated by default), each repetition runs the bare ``qemu-img``
command and the backend's operation back to back, so that both see the same
machine state; medians and their ratio are printed. Target: at most 1.10x.

    .venv/bin/python benchmarks/qcow2_overhead.py [--gib 1] [--reps 31]

The first repetition warms caches and is not counted. The overhead column is the
backend's own cost per call (lock, header read, sidecar record); on a busy
machine the ratio moves with qemu-img's own time, the overhead much less.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from evesnap_core import VolumeSpec
from evesnap_core.discovery import load_backends


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="data written into the image (GiB)")
    parser.add_argument("--reps", type=int, default=31)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evesnap-bench-", dir="/var/tmp") as tmp:
        backend = load_backends(Path(tmp), environ={}).get("qcow2")
        size = max(int(args.gib * 2**30) * 2, 2**30)
        handle = backend.create_volume(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=size))
        image = Path(handle.location)
        written = int(args.gib * 2**30)
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {written}", str(image)],
            check=True,
            capture_output=True,
        )
        opts = f"driver=qcow2,file.filename={image}"

        def bare(*words: str) -> Callable[[], object]:
            return lambda: subprocess.run(
                ["qemu-img", "snapshot", *words, "--image-opts", opts], check=True, capture_output=True
            )

        results: dict[str, tuple[list[float], list[float]]] = {
            k: ([], []) for k in ("create", "list", "rollback", "delete")
        }
        for i in range(args.reps + 1):
            steps = [
                ("create", bare("-c", f"bare-{i}"), lambda i=i: backend.snapshot(handle, f"evesnap-{i}")),
                ("list", bare("-l"), lambda: backend.list_snapshots(handle)),
                ("rollback", bare("-a", f"bare-{i}"), lambda i=i: backend.rollback(handle, f"evesnap-{i}")),
                (
                    "delete",
                    bare("-d", f"bare-{i}"),
                    lambda i=i: backend.delete_snapshot(handle, f"evesnap-{i}"),
                ),
            ]
            for name, plain, ours in steps:
                order = [(0, plain), (1, ours)] if i % 2 == 0 else [(1, ours), (0, plain)]
                for which, fn in order:
                    elapsed = timed(fn)
                    if i:  # repetition 0 is the warm-up
                        results[name][which].append(elapsed)
        print(f"qcow2 image with {args.gib:g} GiB allocated, {args.reps} repetitions, medians")
        print(f"{'operation':<10} {'qemu-img':>12} {'evesnap':>12} {'overhead':>12} {'ratio':>7}")
        worst = 0.0
        for name, (plain, ours) in results.items():
            p, o = statistics.median(plain), statistics.median(ours)
            worst = max(worst, o / p)
            print(
                f"{name:<10} {p * 1000:>10.2f}ms {o * 1000:>10.2f}ms {(o - p) * 1000:>10.2f}ms {o / p:>6.2f}x"
            )
        print(f"worst ratio {worst:.2f}x (target 1.10x): {'met' if worst <= 1.10 else 'MISSED'}")


if __name__ == "__main__":
    main()

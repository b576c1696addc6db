"""evesnap-qcow2 against the bare qemu-img commands, side by side in one run.

For create, list, rollback and delete of an internal snapshot on one image
(1 GiB allocated by default), each repetition runs, back to back and in a
rotating order, the bare ``qemu-img snapshot`` command, the backend through its
resident qemu-storage-daemon (the default) and the backend through qemu-img
(``EVESNAP_QCOW2_DAEMON=off``), all on the same image, so that all three see
the same machine state; medians and their ratios to bare qemu-img are printed,
and the daemon's resident memory. Target: the daemon path at most 1.10x of bare
qemu-img for create and delete (issue #22 asks 0.6x). Rollback goes through
``qemu-img snapshot -a`` on both paths (QMP has no offline revert).

    .venv/bin/python benchmarks/qcow2_overhead.py [--gib 1 [16 ...]] [--reps 31]

The first repetition warms caches (and starts the daemon) and is not counted.
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

OPERATIONS = ("create", "list", "rollback", "delete")
PATHS = ("qemu-img", "daemon", "via qemu-img")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(gib: float, reps: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="evesnap-bench-", dir="/var/tmp") as tmp:
        daemon_path = load_backends(Path(tmp), environ={}).get("qcow2")
        plain_path = load_backends(Path(tmp), environ={"EVESNAP_QCOW2_DAEMON": "off"}).get("qcow2")
        size = max(int(gib * 2**30) * 2, 2**30)
        handle = daemon_path.create_volume(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=size))
        image = Path(handle.location)
        written = int(gib * 2**30)
        chunk = 2**30  # qemu-io takes at most about 2 GiB in one request
        writes = [f"write -P 0x5a {o} {min(chunk, written - o)}" for o in range(0, written, chunk)]
        subprocess.run(
            ["qemu-io", "-f", "qcow2", *(w for c in writes for w in ("-c", c)), str(image)],
            check=True,
            capture_output=True,
        )
        opts = f"driver=qcow2,file.filename={image}"

        def bare(*words: str) -> Callable[[], object]:
            return lambda: subprocess.run(
                ["qemu-img", "snapshot", *words, "--image-opts", opts], check=True, capture_output=True
            )

        results = {op: {p: [] for p in PATHS} for op in OPERATIONS}
        for i in range(reps + 1):
            bd, be, bq = f"bare-{i}", f"daemon-{i}", f"plain-{i}"
            steps: dict[str, dict[str, Callable[[], object]]] = {
                "create": {
                    "qemu-img": bare("-c", bd),
                    "daemon": lambda s=be: daemon_path.snapshot(handle, s),
                    "via qemu-img": lambda s=bq: plain_path.snapshot(handle, s),
                },
                "list": {
                    "qemu-img": bare("-l"),
                    "daemon": lambda: daemon_path.list_snapshots(handle),
                    "via qemu-img": lambda: plain_path.list_snapshots(handle),
                },
                "rollback": {
                    "qemu-img": bare("-a", bd),
                    "daemon": lambda s=be: daemon_path.rollback(handle, s),
                    "via qemu-img": lambda s=bq: plain_path.rollback(handle, s),
                },
                "delete": {
                    "qemu-img": bare("-d", bd),
                    "daemon": lambda s=be: daemon_path.delete_snapshot(handle, s),
                    "via qemu-img": lambda s=bq: plain_path.delete_snapshot(handle, s),
                },
            }
            for name, fns in steps.items():
                order = PATHS[i % 3 :] + PATHS[: i % 3]
                for which in order:
                    elapsed = timed(fns[which])
                    if i:  # repetition 0 is the warm-up
                        results[name][which].append(elapsed)
        from evesnap_qcow2 import daemon  # the benchmark reads what the backend started

        rss = daemon.shared().resident_bytes()
        print(f"\nqcow2 image with {gib:g} GiB allocated, {reps} repetitions, medians")
        columns = (("operation", 10), ("qemu-img", 10), ("daemon", 10), ("ratio", 7), ("via qemu-img", 13))
        print(" ".join(f"{n:<{w}}" if n == "operation" else f"{n:>{w}}" for n, w in columns), f"{'ratio':>7}")
        met = True
        for name, row in results.items():
            p, d, q = (statistics.median(row[k]) for k in PATHS)
            print(
                f"{name:<10} {p * 1000:>8.2f}ms {d * 1000:>8.2f}ms {d / p:>6.2f}x "
                f"{q * 1000:>11.2f}ms {q / p:>6.2f}x"
            )
            if name in ("create", "delete"):
                met = met and d / p <= 1.10
        print(f"daemon resident memory: {rss / 2**20:.1f} MiB" if rss else "daemon: not running")
        print(
            f"create/delete through the daemon at most 1.10x of bare qemu-img: {'met' if met else 'MISSED'}"
        )
        return met


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--gib", type=float, nargs="+", default=[1.0], help="data written into the image (GiB)"
    )
    parser.add_argument("--reps", type=int, default=31)
    args = parser.parse_args()
    for gib in args.gib:
        measure(gib, args.reps)


if __name__ == "__main__":
    main()

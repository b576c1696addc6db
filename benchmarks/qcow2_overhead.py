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

Two more columns say where the floor is, for create and delete: a second
qemu-storage-daemon driven by the plainest client (one socket, one JSON line
per command, nothing of evesnap's) doing what the backend asks of its daemon,
``blockdev-add``, the command, ``blockdev-del`` ("QMP alone"); and the command
alone on an image it already holds open ("command alone", the add and del
untimed). The second is the snapshot metadata update itself, QEMU's qcow2
code, which every QEMU path pays.

    .venv/bin/python benchmarks/qcow2_overhead.py [--gib 1 [16 ...]] [--reps 31]

The first repetition warms caches (and starts the daemon) and is not counted.
"""

from __future__ import annotations

import argparse
import json
import socket
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
FLOORS = ("QMP alone", "command alone")
QMP_COMMAND = {
    "create": "blockdev-snapshot-internal-sync",
    "delete": "blockdev-snapshot-delete-internal-sync",
}


class PlainMonitor:
    """A qemu-storage-daemon and the plainest synchronous QMP client (the floor)."""

    def __init__(self, folder: Path) -> None:
        path = folder / "floor.sock"
        chardev = f"socket,id=m,path={path},server=on,wait=off"
        self.process = subprocess.Popen(
            ["qemu-storage-daemon", "--chardev", chardev, "--monitor", "chardev=m"]
        )
        deadline = time.monotonic() + 10
        while not path.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("qemu-storage-daemon did not start for the floor measurement")
            time.sleep(0.01)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.sock.connect(str(path))
        self.stream = self.sock.makefile("rwb", buffering=0)
        self._reply()  # the greeting
        self.command("qmp_capabilities", {})

    def _reply(self) -> dict[str, object]:
        while True:
            message: dict[str, object] = json.loads(self.stream.readline())
            if "event" not in message:
                return message

    def command(self, name: str, arguments: dict[str, object]) -> None:
        self.stream.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        reply = self._reply()
        if "return" not in reply:
            raise SystemExit(f"floor measurement: {name} failed: {reply}")

    def open(self, image: Path) -> None:
        file = {"driver": "file", "filename": str(image), "locking": "on"}
        self.command("blockdev-add", {"driver": "qcow2", "node-name": "floor", "file": file})

    def close(self) -> None:
        self.command("blockdev-del", {"node-name": "floor"})

    def whole(self, image: Path, operation: str, tag: str) -> Callable[[], object]:
        def step() -> None:
            self.open(image)
            self.command(QMP_COMMAND[operation], {"device": "floor", "name": tag})
            self.close()

        return step

    def untimed(self, image: Path, operation: str, tag: str) -> None:
        self.whole(image, operation, tag)()

    def alone(self, image: Path, operation: str, tag: str) -> float:
        self.open(image)
        try:
            return timed(lambda: self.command(QMP_COMMAND[operation], {"device": "floor", "name": tag}))
        finally:
            self.close()

    def stop(self) -> None:
        self.sock.close()
        self.process.terminate()
        self.process.wait(10)


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

        results: dict[str, dict[str, list[float]]] = {
            op: {p: [] for p in PATHS + FLOORS} for op in OPERATIONS
        }
        floor = PlainMonitor(Path(tmp))
        try:
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
                    if name in QMP_COMMAND:  # the floor, on tag floor-i: made by create, gone after delete
                        tag = f"floor-{i}"
                        if name == "create":
                            whole = timed(floor.whole(image, "create", tag))
                            floor.untimed(image, "delete", tag)
                            alone = floor.alone(image, "create", tag)
                        else:
                            alone = floor.alone(image, "delete", tag)
                            floor.untimed(image, "create", tag)
                            whole = timed(floor.whole(image, "delete", tag))
                        if i:
                            results[name]["QMP alone"].append(whole)
                            results[name]["command alone"].append(alone)
        finally:  # the floor's daemon never outlives the benchmark
            floor.stop()
        from evesnap_qcow2 import daemon  # the benchmark reads what the backend started

        rss = daemon.shared().resident_bytes()
        print(
            f"\nqcow2 image with {gib:g} GiB allocated, {reps} repetitions, medians (ratios to bare qemu-img)"
        )
        heads = (
            "qemu-img",
            "daemon",
            "ratio",
            "via qemu-img",
            "ratio",
            "QMP alone",
            "ratio",
            "command alone",
            "ratio",
        )
        print(f"{'operation':<10}", " ".join(f"{h:>{max(len(h), 9)}}" for h in heads))
        met, goal = True, True
        for name, row in results.items():
            bare_median = statistics.median(row["qemu-img"])
            cells = []
            for column in PATHS + FLOORS:
                width = max(len(column), 9)
                if not row[column]:
                    cells.append(f"{'-':>{width}} {'-':>9}" if column != "qemu-img" else "")
                    continue
                median = statistics.median(row[column])
                cells.append(f"{median * 1000:>{width - 2}.2f}ms")
                if column != "qemu-img":
                    cells.append(f"{median / bare_median:>8.2f}x")
            print(f"{name:<10}", " ".join(c for c in cells if c))
            if name in ("create", "delete"):
                ratio = statistics.median(row["daemon"]) / bare_median
                met, goal = met and ratio <= 1.10, goal and ratio <= 0.6
        print(f"daemon resident memory: {rss / 2**20:.1f} MiB" if rss else "daemon: not running")
        print(
            f"create/delete through the daemon at most 1.10x of bare qemu-img: {'met' if met else 'MISSED'}"
        )
        print(f"create/delete through the daemon at most 0.6x (issue #22): {'met' if goal else 'MISSED'}")
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

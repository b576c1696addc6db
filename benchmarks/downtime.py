"""Downtime of an immediate snapshot of a running two-volume app, side by side:
evesnap's live path (one QMP transaction) against the reference's way (stop the
VM, qemu-img snapshot each volume, start it again).

The guest-visible pause is read from QEMU itself: STOP/RESUME events on a
second QMP monitor and ``query-status`` right after the snapshot (live path);
the time from the VM's stop until it runs again (reference path). Target: 0 ms
paused on the live path (vCPUs; what the guest's I/O waits is measured inside a
real guest by benchmarks/guest_stall.py).

    .venv/bin/python benchmarks/downtime.py [--reps 5] [--mib 256]
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
from evesnap_core.testing.qemu_vm import Disk, QemuProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--mib", type=int, default=256, help="data written into each volume")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="evesnap-dt-", dir="/var/tmp") as tmp,
        tempfile.TemporaryDirectory(prefix="es-", dir="/tmp") as run_dir,
    ):  # short socket paths
        backend = load_backends(Path(tmp), environ={}).get("qcow2")
        handles = [
            backend.create_volume(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=1 << 30))
            for _ in range(2)
        ]
        for h in handles:
            subprocess.run(
                ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {args.mib}M", h.location],
                check=True,
                capture_output=True,
            )
        disks = [Disk(path=Path(h.location), node_name=f"vol{i}") for i, h in enumerate(handles)]
        live_pauses, live_times, ref_downtimes = [], [], []
        for rep in range(args.reps):
            with QemuProcess(disks, Path(run_dir)) as vm, vm.watcher() as watch:
                attached = [h.attached(a) for h, a in zip(handles, vm.attachments(), strict=True)]
                start = time.perf_counter()
                backend.snapshot_group(attached, f"live-{rep}")
                live_times.append(time.perf_counter() - start)
                status = watch.query_status()
                events = watch.event_names()
                paused = "STOP" in events or not status.running
                live_pauses.append(0.0 if not paused else float("nan"))
                # the reference's way: stop, snapshot offline, start
                start = time.perf_counter()
                vm.stop()
            for h in handles:
                subprocess.run(["qemu-img", "snapshot", "-c", f"ref-{rep}", h.location], check=True)
            with QemuProcess(disks, Path(run_dir)) as vm2, vm2.client() as qmp:
                assert qmp.query_status().running
                ref_downtimes.append(time.perf_counter() - start)
        print(f"two qcow2 volumes with {args.mib} MiB written each, {args.reps} repetitions (medians)")
        print(
            f"live (QMP transaction):   guest paused {statistics.median(live_pauses) * 1000:.0f} ms "
            f"(no STOP event, status running), snapshot took {statistics.median(live_times) * 1000:.1f} ms"
        )
        print(f"reference (stop, qemu-img, start): app down {statistics.median(ref_downtimes) * 1000:.0f} ms")
        print(
            "target 0 ms paused on the live path: "
            + ("met" if all(p == 0.0 for p in live_pauses) else "MISSED")
        )


if __name__ == "__main__":
    main()

"""The I/O stall a running guest sees during a live snapshot, by volume size, side by side.

"0 ms paused" (no STOP event) says nothing of what the guest's I/O waits for:
``blockdev-snapshot-internal-sync`` runs in QEMU's main loop, and its cost grows
with the volume's mapped clusters. This boots a real guest (contrib/guestvm,
TCG) through evesnap's QEMU runtime on one qcow2 volume of each size, fully
mapped (``preallocation=metadata``, an ext4 made on the host), and runs in the
guest back-to-back 4 KiB O_DIRECT|O_DSYNC writes (contrib/guestvm/stall_probe.py)
while the host takes a snapshot, three ways:

- live: evesnap's live path, the qcow2 backend's one QMP transaction;
- quiesced: the same inside evesnap's guest freeze (orchestrator/quiesce.py);
- reference: stop the app, ``qemu-img snapshot -c``, start it again (the guest
  is down from the stop until it booted and writes again).

For each it prints the longest write the guest saw in the window (the stall),
beside the longest write of a window with no snapshot (the noise), and the
host-side time of the backend call (what evesnap's warning reads).

    contrib/guestvm/guestvm setup
    .venv/bin/python benchmarks/guest_stall.py [--sizes 1,4,32,128] [--reps 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GUESTVM = ROOT / "contrib" / "guestvm" / "guestvm"
PROBE = ROOT / "contrib" / "guestvm" / "stall_probe.py"
WINDOW = 4.0
"""Seconds the guest probe writes; the snapshot comes WINDOW/2 in."""


def make_volume(path: Path, gib: int) -> None:
    """A qcow2 of `gib` GiB whose clusters are all mapped, holding an ext4 made here."""
    raw = path.with_suffix(".raw")
    subprocess.run(["truncate", "-s", f"{gib}G", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(raw)], check=True, timeout=300)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", str(path), f"{gib}G"],
        check=True,
        timeout=600,
    )
    subprocess.run(
        ["qemu-img", "convert", "-n", "--target-is-zero", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
        check=True,
        timeout=600,
    )
    raw.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,32,128", help="volume sizes in GiB")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if subprocess.run([str(GUESTVM), "check"], check=False).returncode != 0:
        raise SystemExit(2)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="evesnap-stall-", dir="/var/tmp") as tmp,
        tempfile.TemporaryDirectory(prefix="es-", dir="/tmp") as run_dir,
    ):
        folder = Path(tmp)
        setting = json.loads(
            Path(
                subprocess.run(
                    [str(GUESTVM), "setting", str(folder)], capture_output=True, text=True, check=True
                ).stdout.strip()
            ).read_text()
        )
        setting["append"] += " guestvm_fsck=0"
        (folder / "guest.json").write_text(json.dumps(setting))
        os.environ.update(EVESNAP_QEMU_GUEST=str(folder / "guest.json"), EVESNAP_RUNTIME_DIR=run_dir)
        for gib in [int(s) for s in args.sizes.split(",")]:
            results.append(measure(folder, gib, args.reps))
            report(results[-1])
    print()
    print(
        "| mapped volume | no snapshot (noise) | live: guest's longest write | live: QMP call "
        "| quiesced: longest write | quiesced: frozen | reference: guest down | warned |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['gib']} GiB | {fmt(r['noise'])} | {fmt(r['live'])} | {fmt(r['live_call'])} | "
            f"{fmt(r['quiesced'])} | {fmt(r['frozen'])} | {r['reference_s']:.1f} s | {warned(r)} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def warned(r: dict[str, Any]) -> str:
    """How many live snapshots evesnap would report as a warning (call above the bound)."""
    from evesnap_core.orchestrator.transactions import live_stall_bound_ms

    bound = live_stall_bound_ms()
    return f"{sum(c > bound for c in r['live_call'])}/{len(r['live_call'])} (> {bound} ms)"


def fmt(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f} ms" if values else "-"


def report(r: dict[str, Any]) -> None:
    print(
        f"{r['gib']:>4} GiB: noise {fmt(r['noise'])}, live {fmt(r['live'])} (call {fmt(r['live_call'])}), "
        f"quiesced {fmt(r['quiesced'])} (frozen {fmt(r['frozen'])}), reference down {r['reference_s']:.1f} s",
        flush=True,
    )


def measure(folder: Path, gib: int, reps: int) -> dict[str, Any]:
    # imported here: the environment above configures the runtime
    from evesnap_core.discovery import load_backends
    from evesnap_core.handler_types import VolumeHandle, VolumeSpec
    from evesnap_core.orchestrator.ledger import Ledger
    from evesnap_core.orchestrator.quiesce import Quiescer
    from evesnap_core.orchestrator.store import MemoryStore
    from evesnap_core.qemu.guest_agent import GuestAgent
    from evesnap_core.records import utcnow
    from evesnap_core.runtime_hookspecs import AppSpec
    from evesnap_core.runtimes.qemu import QemuRuntime
    from evesnap_core.runtimes.runtime import Runtime
    from evesnap_core.testing.guest import guest_exec, wait_ready

    backend = load_backends(folder, environ={}).get("qcow2")
    handle = backend.create_volume(VolumeSpec(uuid=uuid.uuid4(), format="qcow2", size_bytes=gib << 30))
    image = Path(handle.location)
    image.unlink()
    make_volume(image, gib)  # the same volume, every cluster mapped
    plugin = QemuRuntime(folder / "persist")
    runtime = Runtime(plugin)
    app = AppSpec(uuid=uuid.uuid4(), name=f"stall-{gib}g", version="1", volumes=(handle,))
    quiescer = Quiescer(Ledger(MemoryStore(), utcnow))
    console = plugin._dir(app.uuid) / "console.log"
    out: dict[str, Any] = {"gib": gib, "noise": [], "live": [], "live_call": [], "quiesced": [], "frozen": []}

    def probe(during: Any = None) -> dict[str, Any]:
        sock = runtime.guest_agent(app.uuid)
        assert sock is not None
        guest_exec(sock, ["/bin/rm", "-f", "/run/data/stall_probe.bin.started"])
        pid = guest_exec(sock, ["/usr/bin/python3", str(PROBE), str(WINDOW)], wait=False)
        began = time.monotonic()
        while guest_exec(sock, ["/bin/test", "-e", "/run/data/stall_probe.bin.started"]).code != 0:  # type: ignore[union-attr]
            if time.monotonic() - began > 60:
                raise RuntimeError("the probe never started writing in the guest")
            time.sleep(0.1)
        time.sleep(WINDOW / 2)  # the probe writes WINDOW seconds from now, give or take a poll
        if during is not None:
            during()
        time.sleep(WINDOW / 2)
        with GuestAgent(sock, timeout=10) as agent:
            for _ in range(100):
                status = agent.execute("guest-exec-status", {"pid": pid})
                if status.get("exited"):
                    break
                time.sleep(0.2)
        if "out-data" not in status:
            raise RuntimeError(f"the probe failed in the guest: {status}")
        return dict(json.loads(base64.b64decode(status["out-data"])))

    try:
        runtime.start(app)
        wait_ready(console)
        probe()  # warm: python and the probe file in the guest's caches
        for rep in range(reps):
            out["noise"].append(probe()["max_ms"])
            attached = handle.attached(runtime.attachments(app.uuid)[handle.key])

            def live(rep: int = rep, attached: VolumeHandle = attached) -> None:
                start = time.perf_counter()
                backend.snapshot_group([attached], f"live-{rep}")
                out["live_call"].append((time.perf_counter() - start) * 1000)

            out["live"].append(probe(live)["max_ms"])

            def quiesced(rep: int = rep, attached: VolumeHandle = attached) -> None:
                with quiescer.around(app.uuid, f"q-{rep}", runtime.guest_agent(app.uuid)) as q:
                    backend.snapshot_group([attached], f"quiesced-{rep}")
                assert q.consistency == "filesystem-consistent", q.detail
                out["frozen"].append((q.frozen_seconds or 0) * 1000)

            out["quiesced"].append(probe(quiesced)["max_ms"])
        # the reference's way, once: stop, snapshot offline, start; down until the guest writes again
        start = time.perf_counter()
        runtime.stop(app.uuid, 30)
        subprocess.run(["qemu-img", "snapshot", "-c", "reference", str(image)], check=True, timeout=600)
        runtime.start(app)
        wait_ready(console)
        sock = runtime.guest_agent(app.uuid)
        assert sock is not None
        guest_exec(sock, ["/bin/sh", "-c", "echo x > /run/data/after-reference; sync"])
        out["reference_s"] = time.perf_counter() - start
        out["noise_median"] = statistics.median(out["noise"])
    finally:
        runtime.stop(app.uuid, 30)
        image.unlink(missing_ok=True)
    return out


if __name__ == "__main__":
    main()

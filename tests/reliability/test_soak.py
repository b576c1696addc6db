"""Soak: create, rollback and delete cycles in one long-lived process.

One Orchestrator, opened the way the CLI and the agent open it
(``open_session`` with the embedded runtime), drives an app with two real
qcow2 volumes through cycles of: take a snapshot (controller list), roll back
to it (rollback counter bumped), delete it (list emptied). After a warm-up,
the process must stay flat:

- open file descriptors (``/proc/self/fd``): exactly as many as after warm-up;
- Python objects the garbage collector tracks: at most 1,000 more;
- RSS (``VmRSS`` in ``/proc/self/status``): at most 4 MiB more (short form),
  8 MiB more (long form);
- files in the persist folder: as many as after warm-up (no leaked state,
  journal entries or snapshot files).

Every 25th cycle also checks the rollback's bytes with qemu-io.

The short form (60 cycles) runs by default; the long form (2,000 cycles) is
marked slow. Both print their figures (pytest -s).
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from pathlib import Path

import pytest

from evesnap_core.cli.session import open_session
from evesnap_core.discovery import load_backends
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.testing.conformance.harness import qemu_io_read, qemu_io_write

from ..support import MIB

pytestmark = pytest.mark.qemu

APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOLS = ("6ba7b814-9dad-41d1-80b4-00c04fd430c8", "6ba7b815-9dad-41d1-80b4-00c04fd430c8")
KIB = 1024


def config(snapshots: list[str], counter: int, active: str = "") -> DeviceConfig:
    return parse_model(
        DeviceConfig,
        {
            "apps": [
                {
                    "uuidandversion": {"uuid": APP, "version": "1"},
                    "displayname": "soak",
                    "activate": True,
                    "volumeRefList": [{"uuid": v} for v in VOLS],
                    "snapshot": {
                        "maxSnapshots": 3,
                        "snapshots": [{"id": s, "type": 2} for s in snapshots],
                        "rollbackCmd": {"counter": counter},
                        "activeSnapshot": active,
                    },
                }
            ],
            "volumes": [
                {"uuid": v, "maxsizebytes": str(MIB), "origin": {"type": "VCOT_BLANK"}} for v in VOLS
            ],
        },
    )


def location(orch: Orchestrator, index: int) -> str:
    volume = orch.volumes[f"{VOLS[index]}#0"]
    assert volume.handle is not None
    return volume.handle.location


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def sample(persist: Path) -> dict[str, int]:
    gc.collect()
    return {
        "rss_kib": rss_kib(),
        "fds": len(os.listdir("/proc/self/fd")),
        "objects": len(gc.get_objects()),
        "files": sum(len(files) for _, _, files in os.walk(persist)),
    }


def soak(tmp_path: Path, cycles: int, warmup: int, rss_tolerance_kib: int) -> None:
    if "qcow2" not in load_backends(tmp_path / "probe").backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    persist = tmp_path / "persist"
    persist.mkdir(mode=0o700)
    session = open_session(persist, "embedded", base_dir=tmp_path)
    orch = session.orchestrator
    start = time.monotonic()
    base: dict[str, int] = {}
    peak: dict[str, int] = {}
    for i in range(cycles):
        if i == warmup:
            base = sample(persist)
            warm = time.monotonic()
        snap = str(uuid.uuid4())
        check = i % 25 == 0  # now and then, the rollback's bytes too (qemu-io, outside evesnap)
        if check and i:
            qemu_io_write(location(orch, 0), "qcow2", 0, bytes([i % 256]) * 4096)
        app = orch.reconcile(config([snap], i)).apps[0]  # the rollback counter is i
        assert [s.id for s in app.snapshots] == [snap] and not app.app_err, app
        if check and i:
            qemu_io_write(location(orch, 0), "qcow2", 0, b"\xee" * 4096)
        app = orch.reconcile(config([snap], i + 1, snap)).apps[0]
        assert not app.app_err and [s.id for s in app.snapshots] == [snap], app
        if check and i:
            assert qemu_io_read(location(orch, 0), "qcow2", 0, 4096) == bytes([i % 256]) * 4096
        app = orch.reconcile(config([], i + 1)).apps[0]
        assert not app.snapshots and not app.app_err, app
        if i >= warmup and i % 25 == 0:
            now = sample(persist)
            peak = {k: max(v, peak.get(k, v)) for k, v in now.items()}
    end = sample(persist)
    elapsed = time.monotonic() - start
    per_cycle = (time.monotonic() - warm) / (cycles - warmup)
    print(f"\nsoak: {cycles} cycles (create, rollback, delete; 2 qcow2 volumes) in {elapsed:.1f} s")
    print(f"  {per_cycle * 1000:.0f} ms per cycle after a warm-up of {warmup}")
    for key in base:
        print(
            f"  {key:8s} after warm-up {base[key]:8d}  at the end {end[key]:8d}  peak {peak.get(key, 0):8d}"
        )
    assert end["fds"] == base["fds"], f"file descriptors leak: {base['fds']} -> {end['fds']}"
    assert end["files"] == base["files"], f"files pile up in persist: {base['files']} -> {end['files']}"
    assert end["objects"] - base["objects"] <= 1000, f"objects grow: {base['objects']} -> {end['objects']}"
    assert end["rss_kib"] - base["rss_kib"] <= rss_tolerance_kib, (
        f"RSS grows: {base['rss_kib']} KiB -> {end['rss_kib']} KiB"
    )


def test_soak_short(tmp_path: Path) -> None:
    soak(tmp_path, cycles=60, warmup=10, rss_tolerance_kib=4 * KIB)


@pytest.mark.slow
def test_soak_2000_cycles(tmp_path: Path) -> None:
    soak(tmp_path, cycles=2000, warmup=100, rss_tolerance_kib=8 * KIB)

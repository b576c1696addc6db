"""How the orchestrator's cost grows with the number of apps (backends faked).

For 10, 100 and 1,000 apps of 2 volumes and 5 snapshots each, with the durable
file store on disk and an in-memory backend and runtime (so that only the
orchestrator is measured), it prints the time of a no-op reconcile (the same
config again) and of a restart (a new orchestrator restoring the recorded
state, then producing the reports), and the growth from one size to the next.
Target: under 1 s at 1,000 apps.

    .venv/bin/python benchmarks/orchestrator_scale.py [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from evesnap_core.discovery import load_backends
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.errors import parse_model
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.state.persist_store import PersistStore
from evesnap_core.testing.memory import InstantRuntime, MemoryBackend


def device_config(apps: int) -> DeviceConfig:
    data: dict[str, Any] = {"apps": [], "volumes": []}
    for a in range(apps):
        vols = [str(uuid.UUID(int=a * 4 + v + 1)) for v in (0, 1)]
        data["volumes"] += [
            {"uuid": v, "maxsizebytes": 1 << 20, "origin": {"type": "VCOT_BLANK"}} for v in vols
        ]
        data["apps"].append(
            {
                "uuidandversion": {"uuid": str(uuid.UUID(int=(1 << 64) + a)), "version": "1"},
                "displayname": f"app{a}",
                "activate": True,
                "volumeRefList": [{"uuid": v} for v in vols],
                "snapshot": {
                    "maxSnapshots": 5,
                    "snapshots": [
                        {"id": str(uuid.UUID(int=(2 << 64) + a * 8 + s)), "type": "SNAPSHOT_TYPE_IMMEDIATE"}
                        for s in range(5)
                    ],
                },
            }
        )
    return parse_model(DeviceConfig, data)


def measure(apps: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="evesnap-scale-", dir="/var/tmp") as tmp:
        persist = Path(tmp)
        backend = MemoryBackend()
        registry = load_backends(
            persist,
            extra=[("memory", lambda _ctx: backend)],
            environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,purgeable,zfs,reflink"},
        )
        runtime = InstantRuntime()
        config = device_config(apps)
        start = time.perf_counter()
        orch = Orchestrator(registry, Runtime(runtime), store=PersistStore(persist))
        orch.reconcile(config)
        setup = time.perf_counter() - start
        snapshots = sum(len(a.snapshots) for a in orch.reports().apps)
        assert snapshots == apps * 5, snapshots
        start = time.perf_counter()
        orch.reconcile(config)
        noop = time.perf_counter() - start
        start = time.perf_counter()
        reborn = Orchestrator(registry, Runtime(runtime), store=PersistStore(persist))
        reports = reborn.reports()
        restart = time.perf_counter() - start
        assert sum(len(a.snapshots) for a in reports.apps) == snapshots
        return setup, noop, restart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    print(f"{'apps':>6} {'first apply':>12} {'no-op':>10} {'restart':>10}  growth (no-op, restart)")
    previous: tuple[int, float, float] | None = None
    worst = 0.0
    for apps in (int(s) for s in args.sizes.split(",")):
        setup, noop, restart = measure(apps)
        growth = ""
        if previous:
            factor = apps / previous[0]
            growth = f"x{noop / previous[1]:.1f}, x{restart / previous[2]:.1f} for x{factor:g} apps"
        print(f"{apps:>6} {setup:>11.2f}s {noop * 1000:>8.0f}ms {restart * 1000:>8.0f}ms  {growth}")
        previous = (apps, noop, restart)
        worst = max(worst, noop, restart) if apps >= 1000 else worst
    if previous and previous[0] >= 1000:
        print(
            f"at {previous[0]} apps: no-op {previous[1]:.2f}s, restart {previous[2]:.2f}s "
            f"(target < 1 s): {'met' if max(previous[1], previous[2]) < 1 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()

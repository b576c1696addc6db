"""How the orchestrator's cost grows with the number of apps (backends faked).

For 10, 100 and 1,000 apps of 2 volumes and 5 snapshots each, with the durable
file store on disk and an in-memory backend and runtime (so that only the
orchestrator is measured), it prints the time of a no-op reconcile (the same
config again) and of a restart (a new orchestrator restoring the recorded
state, then producing the reports), and the growth from one size to the next.
The restart runs in a new process, as an agent restarts (its imports not
counted); "load" is its part spent in PersistStore.load (reading every state
file); "in-process" is the restart beside the first orchestrator, still alive
(as this benchmark measured it before: a heap twice as large for the garbage
collector to walk). Each is the median of --repeat runs. Target: the restart
under 0.5 s at 1,000 apps (issue #22; it was 1 s before).

    .venv/bin/python benchmarks/orchestrator_scale.py [--sizes 10,100,1000] [--repeat 3]
        [--profile restart.prof]   (cProfile of one restart at the largest size)
        [--baseline REV]           (evesnap_core at a git revision measured too, size by size)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from evesnap_core.discovery import Registry, load_backends
from evesnap_core.model.config import DeviceConfig
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.state.persist_store import PersistStore
from evesnap_core.testing.memory import InstantRuntime, MemoryBackend

try:
    from evesnap_core.model.validation import parse_model
except ImportError:  # --baseline of a revision before model/errors.py became model/validation.py
    from evesnap_core.model.errors import parse_model


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


def registry_for(persist: Path, backend: MemoryBackend) -> Registry:
    return load_backends(
        persist,
        extra=[("memory", lambda _ctx: backend)],
        environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,purgeable,zfs,reflink"},
    )


def restart(persist: Path, registry: Registry, runtime: InstantRuntime) -> tuple[float, float, int]:
    """A new orchestrator restoring the recorded state, then the reports: (time, load time, snapshots)."""
    store = TimedStore(persist)
    start = time.perf_counter()
    reborn = Orchestrator(registry, Runtime(runtime), store=store)
    reports = reborn.reports()
    took = time.perf_counter() - start
    return took, store.load_time, sum(len(a.snapshots) for a in reports.apps)


def run_self(*args: str) -> str:
    """This script in a new process (with the same PYTHONPATH: the same evesnap code)."""
    return subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    ).stdout


def restart_in_new_process(persist: Path) -> tuple[float, float]:
    """As an agent restarts: a new process (its imports not counted) restoring the state."""
    out = run_self("--restart-in", str(persist))
    took, load, _ = json.loads(out)
    return took, load


def measure(apps: int, repeat: int = 1, profile: str | None = None) -> dict[str, float]:
    """The first apply; the median of `repeat` runs of the rest."""
    with tempfile.TemporaryDirectory(prefix="evesnap-scale-", dir="/var/tmp") as tmp:
        persist = Path(tmp)
        backend = MemoryBackend()
        registry = registry_for(persist, backend)
        runtime = InstantRuntime()
        config = device_config(apps)
        start = time.perf_counter()
        orch = Orchestrator(registry, Runtime(runtime), store=PersistStore(persist))
        orch.reconcile(config)
        setup = time.perf_counter() - start
        snapshots = sum(len(a.snapshots) for a in orch.reports().apps)
        assert snapshots == apps * 5, snapshots
        runs: dict[str, list[float]] = {"noop": [], "restart": [], "load": [], "in_process": []}
        for _ in range(repeat):
            start = time.perf_counter()
            orch.reconcile(config)
            runs["noop"].append(time.perf_counter() - start)
        for _ in range(repeat):
            took, load = restart_in_new_process(persist)
            runs["restart"].append(took)
            runs["load"].append(load)
            took, _, restored = restart(persist, registry, runtime)
            runs["in_process"].append(took)
            assert restored == snapshots, restored
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            Orchestrator(registry, Runtime(runtime), store=PersistStore(persist)).reports()
            profiler.disable()
            profiler.dump_stats(profile)
        return {"setup": setup} | {name: statistics.median(values) for name, values in runs.items()}


class TimedStore(PersistStore):
    load_time = 0.0

    def load(self) -> Any:
        start = time.perf_counter()
        try:
            return super().load()
        finally:
            self.load_time = time.perf_counter() - start


def baseline_code(rev: str, into: Path) -> Path:
    """evesnap_core's source at `rev` (git archive), to measure it beside this one."""
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", root, "archive", rev, "evesnap_core/src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "evesnap_core" / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the no-op and the restarts (median)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile one restart at the largest size")
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure evesnap_core at this git revision, size by size"
    )
    parser.add_argument("--restart-in", metavar="PERSIST", help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=int, metavar="APPS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart_in:
        persist = Path(args.restart_in)
        print(json.dumps(restart(persist, registry_for(persist, MemoryBackend()), InstantRuntime())))
        return
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeat)))
        return
    with tempfile.TemporaryDirectory(prefix="evesnap-baseline-") as tmp:
        baseline = baseline_code(args.baseline, Path(tmp)) if args.baseline else None
        report([int(s) for s in args.sizes.split(",")], args.repeat, args.profile, args.baseline, baseline)


def report(
    sizes: list[int], repeat: int, profile: str | None, rev: str | None, baseline: Path | None
) -> None:
    print(
        f"{'apps':>6} {'code':>8} {'first apply':>12} {'no-op':>9} {'restart':>9} {'(load)':>9} "
        f"{'in-process':>11}  growth (no-op, restart)"
    )
    previous: dict[str, float] = {}
    for apps in sizes:
        if baseline is not None:
            # both in a new process each, alike
            print(row(apps, str(rev)[:8], measure_in_new_process(apps, repeat, baseline), {}))
            m = measure_in_new_process(apps, repeat, None)
            if profile and apps == max(sizes):
                measure(apps, 1, profile)
        else:
            m = measure(apps, repeat, profile if apps == max(sizes) else None)
        print(row(apps, "this", m, previous))
        previous = {"apps": apps} | m
    if previous and previous["apps"] >= 1000:
        noop, took = previous["noop"], previous["restart"]
        print(
            f"at {previous['apps']:g} apps: no-op {noop:.2f}s, restart {took:.2f}s "
            f"(target: restart < 0.5 s): {'met' if took < 0.5 else 'MISSED'}"
        )
    if profile:
        print(f"profile of a restart at {max(sizes)} apps: {profile} (python -m pstats)")


def measure_in_new_process(apps: int, repeat: int, code: Path | None) -> dict[str, float]:
    """measure() in a new process; with `code`, that evesnap_core source instead of this one."""
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(apps), "--repeat", str(repeat)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def row(apps: int, code: str, m: dict[str, float], previous: dict[str, float]) -> str:
    growth = ""
    if previous:
        growth = f"x{m['noop'] / previous['noop']:.1f}, x{m['restart'] / previous['restart']:.1f}"
        growth += f" for x{apps / previous['apps']:g} apps"
    return (
        f"{apps:>6} {code:>8} {m['setup']:>11.2f}s {m['noop'] * 1000:>7.0f}ms {m['restart'] * 1000:>7.0f}ms "
        f"{m['load'] * 1000:>7.0f}ms {m['in_process'] * 1000:>9.0f}ms  {growth}"
    )


if __name__ == "__main__":
    main()

"""The CLI through a running agent's API against the CLI working directly, side by side.

Ten real QEMU apps (TCG, no guest OS), one qcow2 volume each. Each command is
timed as a whole process, the way an operator runs it (interpreter start,
imports, the work, exit): ``status`` (all ten apps, with each volume's sizes
from its backend), ``plugins`` and ``snapshot create`` of a running app (a live
QMP snapshot).
Direct mode runs first with no agent; then the agent starts on the same
persist folder and the same commands go through its socket. Medians and the
ratio are printed, and the cold start of the pieces on each side (imports).

    .venv/bin/python benchmarks/api_roundtrip.py [--apps 10] [--reps 11]

Goals: ``status`` through a running agent starts and answers in < 150 ms here
(issue #20); ``status`` and ``plugins`` start and answer in < 200 ms (issue #22:
by asking the running agent). ``import sys`` is the bare interpreter's start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

EVESNAP = str(Path(sys.executable).with_name("evesnap"))


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {out.returncode}: {out.stderr}")
    return took


def import_cost(module: str) -> float:
    """Seconds to start an interpreter and import `module` (median of 5)."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=11)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="es-bench-api-"))
    run_dir = Path(tempfile.mkdtemp(prefix="es-api-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVESNAP_")}
    env.update(EVESNAP_PERSIST=str(root / "persist"), EVESNAP_RUNTIME_DIR=str(run_dir))
    apps = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(args.apps)]
    config = {
        "apps": [
            {
                "uuidandversion": {"uuid": a, "version": "1"},
                "displayname": f"app{i}",
                "activate": True,
                "volumeRefList": [{"uuid": v}],
                "snapshot": {"maxSnapshots": 50},
            }
            for i, (a, v) in enumerate(apps)
        ],
        "volumes": [
            {"uuid": v, "maxsizebytes": str(16 << 20), "origin": {"type": "VCOT_BLANK"}} for _, v in apps
        ],
    }
    path = root / "config.json"
    path.write_text(json.dumps(config))
    timed([EVESNAP, "apply", str(path)], env)
    commands = {
        f"status ({args.apps} apps)": [EVESNAP, "status"],
        "plugins": [EVESNAP, "plugins"],
        "snapshot create (live)": [EVESNAP, "snapshot", "create", "app0"],
    }
    results: dict[str, dict[str, float]] = {name: {} for name in commands}
    agent = None
    try:
        for mode in ("direct", "api"):
            if mode == "api":
                agent = subprocess.Popen(
                    [EVESNAP, "agent", "--config", str(path), "--interval", "1", "--resync", "0"],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
                deadline = time.monotonic() + 120
                while not (run_dir / "evesnap.sock").exists():
                    if time.monotonic() > deadline:
                        raise SystemExit("the agent never served its API")
                    time.sleep(0.1)
                time.sleep(2.0)  # its first reconcile
            for name, argv in commands.items():
                times = [timed(argv, env) for _ in range(args.reps + 1)][1:]  # the first warms caches
                results[name][mode] = statistics.median(times)
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=120)
        subprocess.run(
            [EVESNAP, "apply", "/dev/stdin"],
            input='{"apps": []}',
            env=env,
            text=True,
            check=False,
            capture_output=True,
            timeout=300,
        )
        subprocess.run(["rm", "-rf", str(root), str(run_dir)], check=False)
    print(f"{'command':28} {'direct':>10} {'via agent':>10} {'ratio':>7}")
    for name, by in results.items():
        ratio = by["api"] / by["direct"]
        print(f"{name:28} {by['direct'] * 1000:8.0f}ms {by['api'] * 1000:8.0f}ms {ratio:6.2f}x")
    print("\ncold start (interpreter + imports, median of 5):")
    for module in ("sys", "evesnap_launch.client", "evesnap_core.cli.main", "fastapi, uvicorn"):
        print(f"  import {module:28} {import_cost(module) * 1000:6.0f} ms")
    goal = results[f"status ({args.apps} apps)"]["api"]
    print(
        f"\nstatus through the agent: {goal * 1000:.0f} ms (goal < 150 ms): "
        + ("met" if goal < 0.15 else "NOT met")
    )
    for name in (f"status ({args.apps} apps)", "plugins"):
        took = results[name]["api"]
        print(
            f"{name} cold start through the agent: {took * 1000:.0f} ms (goal < 200 ms): "
            + ("met" if took < 0.2 else "NOT met")
        )


if __name__ == "__main__":
    main()

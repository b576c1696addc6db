"""The CLI's cold start in direct mode (no agent), beside a bare interpreter and,
with --baseline, beside the same commands of another revision, in one run.

Each command is a whole new process, as an operator runs it: ``python -c pass``,
``evesnap plugins`` and ``evesnap status`` on an empty persist folder (no agent
serves it, so the command imports the core and loads every installed backend).
The three (and the baseline's two) run interleaved, round after round, so that
a busy machine slows them alike; medians are printed, and each command's ratio
to the baseline's.

    .venv/bin/python benchmarks/cold_start.py [--reps 21] [--baseline main]

Each runs from bytecode compiled in the warm-up round (as a device image has
it; the caches in a folder of this run). The baseline is the revision's source
of the core and of every backend (``git archive``) put first on PYTHONPATH,
with this virtualenv's packages and entry points. Goal (issue #22): ``plugins``
and ``status`` under 200 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVESNAP = str(Path(sys.executable).with_name("evesnap"))
SOURCES = [
    "evesnap_core/src",
    "plugins/evesnap_qcow2/src",
    "plugins/evesnap_zfs/src",
    "plugins/evesnap_purgeable/src",
    "contrib/evesnap_reflink/src",
]


def baseline_tree(rev: str, into: Path) -> list[str]:
    """The sources at `rev`, unpacked under `into`: the PYTHONPATH that runs them."""
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", root, "archive", rev, *SOURCES], check=True, capture_output=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return [str(into / s) for s in SOURCES]


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=120)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--baseline", metavar="REV", help="also time the commands of this git revision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evesnap-cold-") as tmp:
        persist = Path(tmp) / "persist"
        persist.mkdir(mode=0o700)
        runtime = Path(tmp) / "run"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "EVESNAP_PERSIST": str(persist), "EVESNAP_RUNTIME_DIR": str(runtime)}
        env.pop("PYTHONPATH", None)
        # compiled once, as on a device image (pip and Debian's packages compile at
        # install); this machine's environment sets PYTHONDONTWRITEBYTECODE, which
        # would make every run compile evesnap's own modules again. The caches go to
        # a folder of this run, not into the source trees.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "plugins": ([EVESNAP, "plugins"], env),
            "status": ([EVESNAP, "status"], env),
        }
        if args.baseline:
            base = Path(tmp) / "baseline"
            base.mkdir()
            base_env = {**env, "PYTHONPATH": os.pathsep.join(baseline_tree(args.baseline, base))}
            cases[f"plugins ({args.baseline})"] = ([EVESNAP, "plugins"], base_env)
            cases[f"status ({args.baseline})"] = ([EVESNAP, "status"], base_env)
        for argv, case_env in cases.values():  # warm the page cache and the bytecode caches
            timed(argv, case_env)
        runs: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.reps):
            for name, (argv, case_env) in cases.items():
                runs[name].append(timed(argv, case_env))
    median = {name: statistics.median(values) for name, values in runs.items()}
    print(f"{'command':<24} {'median':>8} {'min':>8}  (direct mode, empty persist folder, {args.reps} runs)")
    for name, values in runs.items():
        print(f"{name:<24} {median[name] * 1000:>6.0f}ms {min(values) * 1000:>6.0f}ms")
    for command in ("plugins", "status"):
        note = f"{median[command] * 1000:.0f} ms (goal < 200 ms)"
        if args.baseline:
            base_time = median[f"{command} ({args.baseline})"]
            note += f", x{median[command] / base_time:.2f} of {args.baseline} ({base_time * 1000:.0f} ms)"
        print(f"{command}: {note}")


if __name__ == "__main__":
    main()

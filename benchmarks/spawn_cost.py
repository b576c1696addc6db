"""What starting one child costs evesnap, side by side in one run.

Every qemu-img call is a child started by ``evesnap_core.process.run``, which
must give it a death-signal (``PR_SET_PDEATHSIG``: killed with evesnap). Two
ways, timed round after round in a rotating order on the same short tool
(``true``), with a bare ``subprocess.run`` beside them:

- ``setpriv``: ``setpriv --pdeathsig KILL -- tool`` (Python can vfork), what
  ``run`` does where util-linux's setpriv works;
- ``preexec_fn``: prctl in a ``preexec_fn`` (Python must fork the whole
  interpreter), the fallback.

The interpreter is made about as large as a running agent first (``--mib``),
since a fork's cost grows with it and a vfork's does not.

    .venv/bin/python benchmarks/spawn_cost.py [--reps 101] [--mib 120]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable

from evesnap_core import process


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=101)
    parser.add_argument("--mib", type=int, default=120, help="memory the interpreter holds while it spawns")
    args = parser.parse_args()
    ballast = [bytearray(2**20) for _ in range(args.mib)]  # touched pages, as a loaded agent has
    if process._setpriv() is None:
        raise SystemExit("setpriv cannot set a death-signal here: nothing to compare")

    def fallback() -> None:
        saved = process._setpriv
        process._setpriv = lambda: None  # type: ignore[assignment]
        try:
            process.run(["true"])
        finally:
            process._setpriv = saved

    ways: dict[str, Callable[[], object]] = {
        "bare subprocess.run": lambda: subprocess.run(["true"], capture_output=True, check=True),
        "setpriv (evesnap)": lambda: process.run(["true"]),
        "preexec_fn (fallback)": fallback,
    }
    names = list(ways)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.reps + 1):
        for name in names[i % 3 :] + names[: i % 3]:
            start = time.perf_counter()
            ways[name]()
            if i:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    bare = statistics.median(times[names[0]])
    print(f"one child, {args.reps} repetitions, medians, interpreter holding {args.mib} MiB more")
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:<24} {median * 1000:7.2f} ms {median / bare:6.2f}x")
    del ballast


if __name__ == "__main__":
    main()

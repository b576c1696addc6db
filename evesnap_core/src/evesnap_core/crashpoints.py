"""Named fault-injection points at the step boundaries of multi-step operations.

``EVESNAP_CRASH_AT=name[,name...]`` makes the process kill itself with SIGKILL
when it reaches a named point (``EVESNAP_CRASH_AT=name:N`` on the N-th time),
so that tests can prove that every boundary recovers: no state written after
that point, no cleanup, exactly what a power cut would leave.

``EVESNAP_KILL_AT=name=PID[,name=PID...]`` SIGKILLs another process, PID, the
first time the point is reached, and waits until it is gone: a fault of a
process evesnap works with (the QEMU of an app dying in the middle of a live
snapshot), placed exactly. Without either variable a point costs two
dictionary lookups.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

ENV = "EVESNAP_CRASH_AT"
KILL_ENV = "EVESNAP_KILL_AT"
_hits: dict[str, int] = {}
_killed: set[str] = set()
POINTS: set[str] = set()
"""Every point the code has reached at least once (for tests that enumerate them)."""


def _targets() -> dict[str, int]:
    wanted: dict[str, int] = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, nth = item.strip().partition(":")
        if name:
            wanted[name] = int(nth) if nth.isdigit() else 1
    return wanted


def crashpoint(name: str) -> None:
    """Die here, hard, if the environment asks for it."""
    POINTS.add(name)
    if KILL_ENV in os.environ:
        _kill_other(name)
    if ENV not in os.environ:
        return
    targets = _targets()
    if name in targets:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= targets[name]:
            os.kill(os.getpid(), signal.SIGKILL)


def _kill_other(name: str) -> None:
    for item in os.environ.get(KILL_ENV, "").split(","):
        point, _, pid = item.strip().partition("=")
        if point != name or not pid.isdigit() or name in _killed:
            continue
        _killed.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _exists(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.005)


def _exists(pid: int) -> bool:
    """Whether `pid` still runs (a zombie has stopped running)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False

"""Named fault-injection points at the step boundaries of multi-step operations.

``EVESNAP_CRASH_AT=name[,name...]`` makes the process kill itself with SIGKILL
when it reaches a named point (``EVESNAP_CRASH_AT=name:N`` on the N-th time),
so that tests can prove that every boundary recovers: no state written after
that point, no cleanup, exactly what a power cut would leave. Without the
variable a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "EVESNAP_CRASH_AT"
_hits: dict[str, int] = {}
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
    if ENV not in os.environ:
        return
    targets = _targets()
    if name in targets:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= targets[name]:
            os.kill(os.getpid(), signal.SIGKILL)

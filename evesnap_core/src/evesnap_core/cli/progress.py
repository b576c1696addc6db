"""Progress of long operations (a full copy, a clone export) for a person at a
terminal; nothing at all in --json mode or when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from evesnap_core.handler_types import ProgressCallback

MIB = 1 << 20


def terminal_progress(as_json: bool, stream: TextIO | None = None) -> ProgressCallback | None:
    """A callback that redraws one status line, or None where nobody watches."""
    out = stream or sys.stderr
    if as_json or not out.isatty():
        return None
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        finished = total and done >= total
        if not finished and now - last[0] < 0.2:
            return
        last[0] = now
        percent = 100 * done // total if total else 100
        out.write(f"\r  copying {percent:3d}% ({done // MIB}/{total // MIB} MiB)")
        if finished:
            out.write("\n")
        out.flush()

    return show

"""The thaw watchdog: a small process that thaws a guest evesnap froze, if evesnap cannot.

A quiesced snapshot freezes the guest's filesystems through its agent; a guest
left frozen stops its applications' writes, so the thaw must happen even when
evesnap is SIGKILLed, hangs, or loses the agent between the freeze and the
thaw. Before freezing, evesnap starts this watchdog (`process.spawn_guardian`:
not killed with evesnap) holding a pipe:

- evesnap writes ``thawed`` and closes the pipe once it thawed the guest: the
  watchdog ends at once, doing nothing;
- the pipe closes without that word (evesnap died, or gave up on the thaw), or
  the freeze bound passes first: the watchdog thaws the guest itself, retrying
  until ``bound + grace`` seconds after its start, then ends.

evesnap holds no agent connection while the snapshot runs (it connects for the
freeze, and again for the thaw), so the watchdog can always reach the agent.
Run as ``python -m evesnap_core.qemu.thaw_watchdog SOCKET BOUND [LOG]``.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from evesnap_core.errors import GuestAgentError
from evesnap_core.qemu.guest_agent import GuestAgent

STAND_DOWN = b"thawed"
GRACE = 10.0
"""How long after the bound the watchdog keeps trying to thaw."""
TRY_TIMEOUT = 2.0


def _log(log: Path | None, line: str) -> None:
    if log is None:
        return
    with contextlib.suppress(OSError), log.open("a") as out:
        out.write(f"{datetime.now(UTC).isoformat()} thaw-watchdog[{os.getpid()}]: {line}\n")


def wait_for_word(fd: int, bound: float) -> str:
    """``stand-down`` if evesnap said it thawed, ``eof`` if it went away, ``bound`` on time."""
    deadline = time.monotonic() + bound
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "bound"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return "bound"
        chunk = os.read(fd, 64)
        if not chunk:
            return "stand-down" if STAND_DOWN in got else "eof"
        got += chunk


def thaw_until(sock: Path, deadline: float, log: Path | None) -> bool:
    """Thaw through the agent, retrying until `deadline`; True once it says thawed."""
    while True:
        try:
            with GuestAgent(sock, timeout=TRY_TIMEOUT) as agent:
                count = agent.thaw()
                if agent.freeze_status() == "thawed":
                    _log(log, f"thawed the guest ({count} filesystems) through {sock}")
                    return True
        except GuestAgentError as exc:
            _log(log, f"thaw failed, retrying: {exc}")
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m evesnap_core.qemu.thaw_watchdog SOCKET BOUND [LOG]", file=sys.stderr)
        return 2
    start = time.monotonic()
    sock, bound = Path(argv[0]), float(argv[1])
    log = Path(argv[2]) if len(argv) == 3 else None
    why = wait_for_word(sys.stdin.fileno(), bound)
    if why == "stand-down":
        return 0
    _log(log, "evesnap went away before thawing" if why == "eof" else f"freeze bound of {bound:g} s passed")
    return 0 if thaw_until(sock, start + bound + GRACE, log) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

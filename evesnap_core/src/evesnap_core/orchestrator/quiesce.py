"""Quiescing a running guest around a live snapshot, with a guaranteed thaw.

A live snapshot alone is crash-consistent: the volumes hold what a power cut
would leave. When the app's VM has a guest-agent channel and the agent
answers, the guest's filesystems are frozen (``guest-fsfreeze-freeze``: the
guest flushes them and holds new writes) for the length of the QMP
transaction, and the snapshot is filesystem-consistent. A frozen guest stops
its applications' writes, so the freeze is bounded and the thaw guaranteed:

- the freeze must answer within the bound (``EVESNAP_FREEZE_TIMEOUT``, 5 s by
  default), the thaw runs in a ``finally`` (every error path), and a snapshot
  that ended after the bound is recorded crash-consistent (the watchdog may
  have thawed before it);
- a watchdog process that outlives evesnap (`evesnap_core.qemu.thaw_watchdog`)
  thaws the guest if evesnap dies or gives up before it thawed, or once the
  bound passed;
- a ``freeze`` intent is journalled before the freeze: recovery at the next
  start thaws a guest whose intent a crash left.

No channel, no agent, an agent that does not answer within `PROBE_TIMEOUT`,
or a freeze that fails: the snapshot is taken crash-consistent, and its
record says so and why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from evesnap_core.crashpoints import crashpoint
from evesnap_core.errors import GuestAgentError
from evesnap_core.orchestrator.ledger import Ledger
from evesnap_core.process import spawn_guardian
from evesnap_core.qemu import thaw_watchdog
from evesnap_core.qemu.guest_agent import GuestAgent
from evesnap_core.records import Consistency

log = logging.getLogger(__name__)

FREEZE_TIMEOUT_ENV = "EVESNAP_FREEZE_TIMEOUT"
DEFAULT_FREEZE_TIMEOUT = 5.0
PROBE_TIMEOUT = 2.0
"""How long a guest agent may take to answer its first sync (no agent: this is the cost)."""
THAW_TRY = 2.0
"""evesnap's own thaw tries for this long; the watchdog goes on after it."""


def freeze_timeout() -> float:
    """The freeze bound: ``$EVESNAP_FREEZE_TIMEOUT`` seconds (0.5-60), else 5."""
    raw = os.environ.get(FREEZE_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_FREEZE_TIMEOUT
    except ValueError:
        log.warning(
            "%s=%r is not a number of seconds: using %g", FREEZE_TIMEOUT_ENV, raw, DEFAULT_FREEZE_TIMEOUT
        )
        return DEFAULT_FREEZE_TIMEOUT
    return min(max(value, 0.5), 60.0)


@dataclass
class Quiesce:
    """What a quiesce achieved: the snapshot's consistency level and why."""

    consistency: Consistency = "crash-consistent"
    detail: str = ""
    frozen_seconds: float | None = None


def thaw(sock: Path, within: float) -> bool:
    """Thaw through the agent at `sock`, retrying for `within` seconds; True once thawed."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        try:
            with GuestAgent(sock, timeout=max(min(left, THAW_TRY), 0.2)) as agent:
                agent.thaw()
                if agent.freeze_status() == "thawed":
                    return True
        except GuestAgentError as exc:
            log.debug("thaw through %s failed: %s", sock, exc)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class Quiescer:
    """Freezes a guest around a block of work (`around`), thawing it whatever happens."""

    def __init__(self, ledger: Ledger, bound: float | None = None, log_dir: Path | None = None) -> None:
        self.ledger = ledger
        self.bound = freeze_timeout() if bound is None else bound
        self.log_dir = log_dir

    def _watchdog(self, sock: Path) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", thaw_watchdog.__name__, str(sock), f"{self.bound:g}"]
        if self.log_dir is not None:
            argv.append(str(self.log_dir / "thaw-watchdog.log"))
        return spawn_guardian(argv)

    @staticmethod
    def _release(watchdog: subprocess.Popen[bytes], thawed: bool) -> None:
        """Tell the watchdog the end: stand down (thawed), or take over (EOF alone)."""
        assert watchdog.stdin is not None
        with contextlib.suppress(OSError):
            if thawed:
                watchdog.stdin.write(thaw_watchdog.STAND_DOWN)
                watchdog.stdin.flush()
            watchdog.stdin.close()
        if thawed:  # no watchdog of this freeze may thaw a later one
            try:
                watchdog.wait(5.0)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()

    @contextlib.contextmanager
    def around(self, app: UUID, snapshot_id: str, sock: Path | None) -> Iterator[Quiesce]:
        """Freeze the guest of `app` (agent at `sock`) for the block, if it can be."""
        result = Quiesce()
        if sock is None:
            result.detail = "the app has no guest-agent channel"
            yield result
            return
        agent = GuestAgent(sock, timeout=min(PROBE_TIMEOUT, self.bound))
        try:
            agent.connect()
            status = agent.freeze_status()
        except GuestAgentError as exc:
            agent.close()
            result.detail = f"no guest agent answered: {exc}"
            log.info("snapshot %s of app %s is crash-consistent: %s", snapshot_id, app, result.detail)
            yield result
            return
        if status == "frozen":  # someone else froze it: not ours to thaw
            agent.close()
            result.detail = "the guest's filesystems were already frozen by someone else"
            yield result
            return
        with self.ledger.intent("freeze", app, snapshot_id, {"agent": str(sock)}) as intent:
            watchdog = self._watchdog(sock)
            started = time.monotonic()
            thawed = False
            try:
                crashpoint("freeze.watchdog_started")
                try:
                    count = agent.freeze(timeout=self.bound)
                except GuestAgentError as exc:
                    result.detail = f"the guest agent did not freeze: {exc}"
                else:
                    if count > 0:
                        result.consistency = "filesystem-consistent"
                        result.detail = f"{count} guest filesystem(s) frozen"
                    else:  # the agent's state stays "thawed": nothing was held
                        result.detail = "the guest agent found no filesystem to freeze"
                agent.close()  # free the agent's channel for the watchdog
                crashpoint("freeze.frozen")
                yield result
                if result.consistency == "filesystem-consistent" and time.monotonic() - started > self.bound:
                    result.consistency = "crash-consistent"
                    result.detail = (
                        f"the snapshot took longer than the freeze bound of {self.bound:g} s: "
                        "the guest may have been thawed before it"
                    )
            finally:
                agent.close()
                thawed = thaw(sock, THAW_TRY)
                result.frozen_seconds = time.monotonic() - started
                self._release(watchdog, thawed)
                if not thawed:
                    intent.leave_to_recovery()
                    log.warning("guest of app %s not thawed yet: the watchdog goes on", app)
            crashpoint("freeze.thawed")
            if result.consistency == "filesystem-consistent":
                result.detail += f" for {result.frozen_seconds * 1000:.0f} ms"

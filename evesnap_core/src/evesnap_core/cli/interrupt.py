"""SIGINT and SIGTERM in a command: one line and exit 130 / 143, never a traceback.

A command that gets either signal stops where it is by raising `Interrupted`
(a BaseException, so neither click's "Aborted!" nor an ``except Exception``
step handler swallows it): a running child is killed with its group by
`evesnap_core.process.run`, a durable write is whole or absent, and the step
in flight stays in the journal that the next command recovers -- as after a
crash, which every step already survives. A second signal while the first
unwinds is ignored. The agent instead finishes the step in flight (`StopFlag`).
"""

from __future__ import annotations

import signal
from types import FrameType

from evesnap_core import process

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Interrupted(BaseException):
    """The command was told to stop by `signum`."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def line(self) -> str:
        return (
            f"evesnap: interrupted by {signal.Signals(self.signum).name}; "
            "the step in flight is journalled and the next command finishes it"
        )


_raised = False


def _raise(signum: int, frame: FrameType | None) -> None:
    global _raised
    if process.defer_signal(signum):
        return  # inside a fork's hooks, where a raise would be lost: raised again after it
    if _raised:
        return  # already unwinding: let it finish
    _raised = True
    raise Interrupted(signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise `Interrupted` in the main thread."""
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


class StopFlag:
    """For the agent: a signal only asks it to stop after the step in flight."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0) if self.signum else 0

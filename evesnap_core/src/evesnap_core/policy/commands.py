"""Running a pre- or post-snapshot command: an argument list, never a shell, with a timeout.

The policy file names these commands in its ``hooks`` table (a name kept for
the file's sake); in the code a "hook" is only ever a pluggy hook.

Why its own module: such a command is someone else's program running with evesnap's
privileges, so it is started without a shell (no quoting surprises), in its own
process group (a timeout kills it and everything it started), with stdin
closed, and what it printed on stderr is kept (tail) for the report that says
why a snapshot was vetoed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TAIL = 2000
"""Characters of a command's stderr/stdout kept for the report."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None
    """None when it could not start or was killed at its timeout."""
    stderr: str
    stdout: str
    seconds: float
    timed_out: bool = False
    start_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line: what happened, and the tail of stderr."""
        if self.start_error is not None:
            what = f"could not start {self.argv[0]!r}: {self.start_error}"
        elif self.timed_out:
            what = f"{self.argv[0]!r} killed after its timeout ({self.seconds:.1f} s)"
        else:
            what = f"{self.argv[0]!r} exited with {self.returncode}"
        err = " ".join(self.stderr.split())
        return f"{what}: {err}" if err else what


def _tail(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")[-TAIL:]


def run_command(
    argv: Sequence[str], timeout: float, extra_env: Mapping[str, str] | None = None
) -> CommandResult:
    """Run `argv` to completion or until `timeout` seconds; never raises for the command's faults."""
    env = dict(os.environ)
    env.update(extra_env or {})
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return CommandResult(tuple(argv), None, "", "", 0.0, start_error=exc.strerror or str(exc))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # the command's own group: it and its children
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipes
            out, err = b"", b"(output lost: a descendant of the hook still holds its pipes)"
            proc.wait()
        return CommandResult(
            tuple(argv), None, _tail(err), _tail(out), time.monotonic() - started, timed_out=True
        )
    return CommandResult(tuple(argv), proc.returncode, _tail(err), _tail(out), time.monotonic() - started)

"""Running external tools (qemu-img, qemu-nbd, zfs...) the one safe way.

Argument lists only, never a shell; a timeout on every call, after which the
whole process group is killed; stderr kept in the error raised. Backends use
this instead of calling subprocess themselves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from evesnap_core.errors import CommandFailed, CommandTimeout

DEFAULT_TIMEOUT = 120.0
"""The reference gives qemu-img two minutes; so do we, unless told otherwise."""


def run(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` and return its result; raise CommandFailed on an exit code not
    in `ok_codes` (when `check`), CommandTimeout when it outlives `timeout`."""
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a list of arguments, never a shell string")
    args = [os.fspath(a) for a in argv]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise CommandTimeout(args, timeout, err.decode(errors="replace")) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    result = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if check and proc.returncode not in ok_codes:
        raise CommandFailed(args, proc.returncode, err.decode(errors="replace"))
    return result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)

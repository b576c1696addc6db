"""Running external tools (qemu-img, qemu-nbd, zfs...) the one safe way.

Argument lists only, never a shell; a timeout on every call, after which the
whole process group is killed; stderr kept in the error raised. Backends use
this instead of calling subprocess themselves.

Children never outlive evesnap unseen: each one is started with
``PR_SET_PDEATHSIG`` (the kernel kills it when the evesnap thread that started
it dies, even by SIGKILL), so no half-done backend step (a ``qemu-img
snapshot -c``) finishes behind an evesnap that restarted and recovered. As a
second net, every child carries ``EVESNAP_OWNER=<persist tag>:<pid>`` in its
environment: `wait_for_orphans` finds children of a dead evesnap on the same
persist folder (a kernel without PDEATHSIG, a daemon that forked away, one
whose evesnap died before the death-signal was set) and waits for them, or
kills them, before the next writer goes on.

How the death-signal is set: through util-linux's ``setpriv --pdeathsig
KILL`` put before the tool (``setpriv`` sets it, then execs the tool, which
keeps it), so that Python starts the child with vfork. A ``preexec_fn``
calling prctl makes Python fork the whole interpreter instead: ~15 ms a
child at an agent's size against ~3.4 ms (``benchmarks/spawn_cost.py``),
paid by every qemu-img call. Without a usable ``setpriv`` the ``preexec_fn`` is the way.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from evesnap_core.errors import CommandFailed, CommandTimeout

DEFAULT_TIMEOUT = 120.0
"""The reference gives qemu-img two minutes; so do we, unless told otherwise."""

OWNER_ENV = "EVESNAP_OWNER"
_PR_SET_PDEATHSIG = 1

_owner: str | None = None
"""The persist folder's tag of this process (set by the session that opened it)."""


@functools.cache
def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up (ctypes imported) by the parent when it first makes a
    child's preexec_fn, not at import: a command that starts no child never pays it."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


def persist_tag(persist: Path) -> str:
    """A short name of a persist folder (also in QMP socket names)."""
    return hashlib.sha256(str(persist.resolve()).encode()).hexdigest()[:8]


def set_owner(persist: Path) -> str:
    """Mark every later child as this process's, working on `persist`."""
    global _owner
    _owner = persist_tag(persist)
    return _owner


def die_with_parent(parent: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when its parent thread dies (and
    exits at once if the parent is already gone)."""
    expected = parent if parent is not None else os.getpid()
    prctl = _load_prctl()  # here, in the parent: nothing is imported or looked up after the fork

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != expected:  # the parent died before prctl took effect
            os._exit(137)

    return preexec


SETPRIV_PROBE_TIMEOUT = 5.0


@functools.cache
def _setpriv() -> str | None:
    """The ``setpriv`` that can set a death-signal here (probed once), or None."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, "--pdeathsig", "KILL", "--", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SETPRIV_PROBE_TIMEOUT,
            preexec_fn=die_with_parent(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if probe.returncode == 0 else None


def dying_with_parent(
    args: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[list[str], Callable[[], None] | None]:
    """`args` and the ``preexec_fn`` that start a child killed when its parent
    thread dies: ``setpriv --pdeathsig KILL -- args`` and none (a vfork), or,
    without setpriv, `args` and :func:`die_with_parent` (a fork). `env` is the
    child's environment: its PATH finds the tool, as Popen's would."""
    setpriv = _setpriv()
    if setpriv is None:
        return list(args), die_with_parent()
    search = os.pathsep.join(os.get_exec_path(env))
    if shutil.which(args[0], path=search) is None:  # as Popen says it, not as setpriv's exit status
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), args[0])
    return [setpriv, "--pdeathsig", "KILL", "--", *args], None


_spawning_in_main = False
_deferred_signal: int | None = None


def defer_signal(signum: int) -> bool:
    """For a signal handler that raises: True (and the signal is kept for later)
    while the main thread forks a child.

    With a ``preexec_fn``, fork runs Python's at-fork hooks (logging's lock
    release among them), and Python runs signal handlers there too; an exception
    a handler raises there is only reported ("Exception ignored in ...
    _releaseLock") and the interrupt is LOST. Kept, the signal is raised again
    the moment the child exists, in ordinary code (`run` then stops the child).
    """
    global _deferred_signal
    if not _spawning_in_main:
        return False
    if _deferred_signal is None:
        _deferred_signal = signum
    return True


@contextlib.contextmanager
def _spawn_window() -> Iterator[None]:
    global _spawning_in_main, _deferred_signal
    main = threading.current_thread() is threading.main_thread()
    if main:
        _spawning_in_main = True
    try:
        yield
    finally:
        if main:
            _spawning_in_main = False
            signum, _deferred_signal = _deferred_signal, None
            if signum is not None:
                signal.raise_signal(signum)  # its handler runs now, outside the fork


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: `env` (or ours) plus the owner mark."""
    out = dict(env) if env is not None else dict(os.environ)
    if _owner is not None:
        out[OWNER_ENV] = f"{_owner}:{os.getpid()}"
    return out


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
    environment = child_env(env)
    launched, preexec = dying_with_parent(args, environment)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with _spawn_window():
            proc = subprocess.Popen(  # a preexec_fn only calls prctl and getppid (thread-safe)
                launched,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environment,
                start_new_session=True,
                preexec_fn=preexec,
            )
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        assert proc is not None
        _kill_group(proc)
        out, err = proc.communicate()
        raise CommandTimeout(args, timeout, err.decode(errors="replace")) from None
    except BaseException:  # an interrupt (kept until the child existed) or a failure
        if proc is not None:
            _kill_group(proc)
            proc.wait()
        raise
    result = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if check and proc.returncode not in ok_codes:
        raise CommandFailed(args, proc.returncode, err.decode(errors="replace"))
    return result


def spawn_guardian(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start `argv` meant to OUTLIVE evesnap if evesnap dies: no PDEATHSIG, its
    own session, a pipe on its stdin that tells it evesnap's end (EOF).

    The one kind of child allowed to outlive its evesnap: a guardian that
    undoes something only evesnap's death could leave (the thaw watchdog,
    `evesnap_core.qemu.thaw_watchdog`). It carries the owner mark, so a next
    evesnap waits for it (`wait_for_orphans`) before it recovers; a guardian
    must therefore end on its own within a few seconds of being left."""
    args = [os.fspath(a) for a in argv]
    with _spawn_window():
        return subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# ------------------------------------------------------------ finding processes


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]  # noqa: PTH208 (fast)


def cmdline(pid: int) -> list[str]:
    """A process's argv ([] when it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def _owner_mark(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = f"{OWNER_ENV}=".encode()
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def orphans(tag: str, exclude: Callable[[list[str]], bool] = lambda argv: False) -> list[int]:
    """Children of an evesnap on persist folder `tag` that is no longer alive."""
    found = []
    me = os.getpid()
    for pid in pids():
        if pid == me:
            continue
        mark = _owner_mark(pid)
        if mark is None or not mark.startswith(f"{tag}:"):
            continue
        owner = mark.split(":", 1)[1]
        if owner.isdigit() and (int(owner) == me or alive(int(owner))):
            continue  # a living evesnap's own child (a reader's qemu-img info)
        if exclude(cmdline(pid)):
            continue
        found.append(pid)
    return found


def is_vm_or_export(argv: list[str]) -> bool:
    """Children meant to outlive their evesnap: an app's QEMU (the runtime finds
    those by name) and a read-only export's qemu-nbd (the backend tracks it)."""
    name = Path(argv[0]).name if argv else ""
    return name.startswith("qemu-system") or name == "qemu-nbd"


def wait_for_orphans(tag: str, timeout: float = 30.0) -> list[int]:
    """Wait for the orphaned children of a dead evesnap on `tag` to end (a
    half-done step must finish before recovery looks at its result); kill those
    still running after `timeout`. Returns the pids that were found."""
    found = orphans(tag, is_vm_or_export)
    deadline = time.monotonic() + timeout
    left = found
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in left:
        end = time.monotonic() + 5
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
    return found

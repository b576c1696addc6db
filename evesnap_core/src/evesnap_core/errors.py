"""Every typed error evesnap raises, in one place.

Callers branch on the type, never on message text: the orchestrator turns a
`RollbackBlocked` into a report naming the blockers, the conformance suite checks
that an undeclared capability raises `NotSupported`, and so on. Every error says
what happened in its message, so that it can be shown to an operator as it is.

Two parts. The first is part of the plugin surface: errors a backend raises (and
sees from the core's helpers: `CommandFailed` from `process.run`, `QmpError` from
the QMP client), re-exported by `evesnap_core`. The second is the core's own:
raised by the orchestrator, the state store, the app runtimes and the backend
proxy, never by a backend.
"""

from __future__ import annotations

from collections.abc import Sequence


class EvesnapError(Exception):
    """Base of every error evesnap raises on purpose."""


class ConfigError(EvesnapError, ValueError):
    """Input (controller config, CLI argument, stored file) that is invalid.

    `path` names the offending field, e.g. ``apps[0].snapshot.snapshots[1].id``.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)


class NotSupported(EvesnapError):
    """A backend was asked for a capability it does not declare."""

    def __init__(self, backend: str, capability: str, detail: str = "") -> None:
        self.backend = backend
        self.capability = capability
        msg = f"backend {backend!r} does not support {capability}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class BackendUnavailable(EvesnapError):
    """A backend is installed but cannot work here (missing library, no pool...)."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(f"backend {backend!r} is unavailable: {reason}")


class NoBackendFor(EvesnapError):
    """No installed, available backend claims a volume; the message names what
    would serve it (a distribution to install, a setting to change)."""

    def __init__(self, volume: str, detail: str) -> None:
        self.volume = volume
        super().__init__(f"no backend for volume {volume}: {detail}")


class NotFound(EvesnapError):
    """Something named does not exist."""


class VolumeNotFound(NotFound):
    def __init__(self, volume: str, detail: str = "") -> None:
        self.volume = volume
        super().__init__(f"volume {volume} not found" + (f": {detail}" if detail else ""))


class SnapshotNotFound(NotFound):
    def __init__(self, snapshot: str, volume: str = "") -> None:
        self.snapshot = snapshot
        self.volume = volume
        where = f" on volume {volume}" if volume else ""
        super().__init__(f"snapshot {snapshot!r} not found{where}")


class AlreadyExists(EvesnapError):
    """A create collided with an existing object that differs from the request."""


class InUse(EvesnapError):
    """The object is held by something else (a running VM, a clone, an export)."""


class VolumeLocked(InUse):
    """A running VM holds the volume; offline tools must not touch it."""

    def __init__(self, volume: str, detail: str = "") -> None:
        self.volume = volume
        super().__init__(f"volume {volume} is locked by a running VM" + (f": {detail}" if detail else ""))


class SnapshotInUse(InUse):
    """A snapshot cannot be deleted because clones or exports depend on it."""

    def __init__(self, snapshot: str, users: Sequence[str]) -> None:
        self.snapshot = snapshot
        self.users = list(users)
        super().__init__(f"snapshot {snapshot!r} is in use by: {', '.join(self.users)}")


class RollbackBlocked(EvesnapError):
    """Rollback would destroy newer snapshots; it needs an explicit option."""

    def __init__(self, snapshot: str, blockers: Sequence[str]) -> None:
        self.snapshot = snapshot
        self.blockers = list(blockers)
        super().__init__(
            f"rollback to {snapshot!r} would destroy newer snapshots: "
            f"{', '.join(self.blockers)} (pass destroy_newer to allow it)"
        )


class NoSpace(EvesnapError):
    """Not enough free space; checked before anything was written."""

    def __init__(self, where: str, needed: int, available: int) -> None:
        self.where = where
        self.needed = needed
        self.available = available
        super().__init__(f"not enough space in {where}: {needed} bytes needed, {available} available")


class FormatError(EvesnapError):
    """A volume is not in the format its backend expects (e.g. not qcow2)."""


class CorruptVolume(FormatError):
    """The volume's metadata is damaged."""


class UnsafePath(EvesnapError):
    """A path evesnap would write through is not what it must be: a symbolic link,
    or not a folder, on the way from the persist (or runtime) folder to the file.
    Raised by the durable-file helpers before anything is written."""

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        super().__init__(f"{path} is {what}: evesnap writes nothing through it (remove it)")


class InvalidName(EvesnapError, ValueError):
    """A snapshot or volume name that cannot be used safely."""


class CommandFailed(EvesnapError):
    """An external command exited non-zero; stderr is kept."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-3:] if stderr.strip() else ["(no stderr)"]
        super().__init__(f"{self.argv[0]} exited with {returncode}: {' | '.join(tail)}")


class CommandTimeout(CommandFailed):
    """An external command did not finish in its time limit and was killed."""

    def __init__(self, argv: Sequence[str], timeout: float, stderr: str) -> None:
        super().__init__(argv, -9, stderr)
        self.timeout = timeout
        self.args = (f"{self.argv[0]} did not finish within {timeout:g} s and was killed",)


class QmpError(EvesnapError):
    """QEMU refused a QMP command, or could not be reached."""

    def __init__(self, where: str, command: str, detail: str) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"QMP {command} on {where} failed: {detail}")


class QmpTimeout(QmpError):
    """QEMU did not answer in time (busy monitor, hung QEMU)."""


class QmpDisconnected(QmpError):
    """QEMU is gone: its monitor refused the connection, or closed it before
    answering (the process died or quit). Whether a command sent just before
    took effect is unknown: look at what it would have changed."""


# ---------------------------------------------------------------- the core's own


class GuestAgentError(EvesnapError):
    """The QEMU guest agent refused a command, or could not be reached."""

    def __init__(self, where: str, command: str, detail: str) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"guest agent {command} on {where} failed: {detail}")


class GuestAgentTimeout(GuestAgentError):
    """The guest agent did not answer in time (no agent in the guest, a hung agent)."""


class UnknownTarget(NotFound):
    """An app, snapshot or clone an operator or a controller named is not known to
    evesnap (not a backend's missing volume or snapshot, which is a failure)."""


class StateError(EvesnapError):
    """Stored state that cannot be read or trusted."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{message} in {path}")


class LockHeld(EvesnapError):
    """Another agent holds the persist folder."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{path} is locked by {holder}; only one evesnap agent may use it")


class AppRuntimeError(EvesnapError):
    """The app runtime failed to start, stop or describe an app."""


class BackendBug(EvesnapError):
    """A backend broke its contract: an untyped exception or a malformed result
    (raised by the core's `Backend` proxy, which names the backend and the hook)."""

    def __init__(self, backend: str, hook: str, detail: str) -> None:
        self.backend = backend
        self.hook = hook
        super().__init__(f"backend {backend!r} failed in {hook}: {detail}")

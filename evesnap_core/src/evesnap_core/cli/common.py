"""What the operator's commands share: opening a session, naming an app or a
snapshot (the exit codes are in `exit_codes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from evesnap_core.cli.exit_codes import EXIT_FAILED, EXIT_INVALID, EXIT_LOCKED
from evesnap_core.cli.output import fail
from evesnap_core.cli.progress import terminal_progress
from evesnap_core.cli.session import Session, open_session
from evesnap_core.errors import ConfigError, LockHeld, UnsafePath

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_LOCKED",
    "app_or_fail",
    "free_text_option",
    "session_or_fail",
    "snapshot_id_or_fail",
]


def session_or_fail(
    obj: Any,
    base_dir: Path | None = None,
    as_json: bool = True,
    write: bool = True,
    locked_hint: str = "stop it, or use another --persist",
) -> Session:
    """A session (the agent's own, for a command it runs for a client), or exit 2
    (bad setting) or 4 (another agent holds the persist folder)."""
    from evesnap_core.cli import session as sessions

    if sessions.hosted is not None:  # a command the agent runs for a client: its session
        sessions.hosted.orchestrator.wiring.resolver.base_dir = base_dir or Path.cwd()
        return sessions.hosted
    try:
        return open_session(obj.persist, obj.runtime, base_dir, terminal_progress(as_json), write=write)
    except ConfigError as exc:
        fail(str(exc), "see 'evesnap --help'", EXIT_INVALID)
        raise  # unreachable
    except UnsafePath as exc:  # a state folder or lock file replaced by a link
        fail(str(exc), "check the persist folder", EXIT_INVALID)
        raise
    except LockHeld as exc:
        import sys

        from evesnap_launch.client import forward_when_served

        code = None
        if Path(sys.argv[0]).name == "evesnap":  # the command line, not click called in-process
            code = forward_when_served(sys.argv[1:])  # an agent that is still starting its API
        if code is not None:
            raise SystemExit(code) from None
        fail(str(exc), locked_hint, EXIT_LOCKED)
        raise
    except OSError as exc:  # a read-only persist folder, an unwritable HOME or runtime dir
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"cannot use {where}{exc.strerror or exc}", "check the folder and its permissions", EXIT_INVALID)
        raise


def app_or_fail(session: Session, app: str) -> UUID:
    try:
        return session.app_uuid(app)
    except ConfigError as exc:
        fail(str(exc), "run 'evesnap status' to list apps", EXIT_INVALID)
        raise


def snapshot_id_or_fail(value: str, field: str) -> str:
    """A snapshot id is a UUID (the controller's and evesnap's own); anything else
    is refused naming the argument, before it reaches any backend."""
    try:
        return str(UUID(value))
    except ValueError:
        fail(f"{field}: not a snapshot UUID: {value!r}", "run 'evesnap snapshot list APP'", EXIT_INVALID)
        raise


def free_text_option(ctx: Any, param: Any, value: str | None) -> str | None:
    """A click callback for an operator's free text (``--name``, NAME): checked
    before anything opens or changes (`validation.free_text`); exit 2 naming it."""
    if value is None or value == "":
        return value
    from evesnap_core.model.validation import free_text

    label = next((o for o in getattr(param, "opts", []) if o.startswith("--")), None) or param.name.upper()
    try:
        return free_text(value, label)
    except ConfigError as exc:
        fail(str(exc), "a display name is one printable line of at most 256 characters", EXIT_INVALID)
        raise

"""The agent's one orchestrator, shared by the controller's config loop and
local requests: every request is an operation, run in a thread of its own once
its turn comes (`lanes`): one app's requests in order, different apps' requests
side by side, the config loop and whole-device commands alone -- so requests
queue behind each other and behind a reconcile, and none is ever refused as
"locked".

A request runs the very `evesnap` command the CLI would run directly (same
validation, output and exit codes), inside the agent with its session: the
command's stdout and stderr are captured per thread, its progress goes into
the operation.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from evesnap_core.api.lanes import DEVICE, Lanes, Scope
from evesnap_core.api.models import CommandRequest, CommandResult, Event, Operation, Progress

KEEP_DONE = 200
"""Finished operations kept for GET /v1/operations/{id}."""


def _now() -> datetime:
    return datetime.now(UTC)


class _Router(io.TextIOBase):
    """sys.stdout / sys.stderr that a thread can point at its own buffer."""

    def __init__(self, original: TextIO) -> None:
        self.original = original
        self.local = threading.local()

    @property
    def target(self) -> TextIO:
        return getattr(self.local, "buffer", None) or self.original

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False if getattr(self.local, "buffer", None) else self.original.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "strict"

    def fileno(self) -> int:
        return self.original.fileno()

    @contextlib.contextmanager
    def capture(self) -> Iterator[io.StringIO]:
        buf = io.StringIO()
        self.local.buffer = buf
        try:
            yield buf
        finally:
            self.local.buffer = None


APP_COMMANDS = {
    ("snapshot", "create"),
    ("snapshot", "rollback"),
    ("snapshot", "delete"),
    ("snapshot", "rename"),
    ("snapshot", "describe"),
    ("snapshot", "list"),
    ("snapshot", "open"),
    ("snapshot", "close"),
    ("clone", "app"),
    ("clone", "volumes"),
}
"""Commands that touch one app only (its records, its volumes, its runtime) and
read no file of the client's: they run beside other apps' requests. Every other
command holds the whole device."""


def command_words(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The command path (``["snapshot", "create"]``) and the leaf's parameters,
    parsed by the CLI's own click definitions (nothing runs)."""
    import click

    from evesnap_core.cli.main import cli

    command: click.Command = cli
    parent: click.Context | None = None
    args, name = list(argv), "evesnap"
    path: list[str] = []
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=name, parent=parent, resilient_parsing=True)
        _, rest, _ = command.make_parser(ctx).parse_args(args)
        if not rest:
            return path, {}
        found, sub, args = command.resolve_command(ctx, rest)
        if sub is None or found is None:
            return path, {}
        command, parent, name = sub, ctx, found
        path.append(found)
    return path, command.make_context(name, args, parent=parent, resilient_parsing=True).params


class _Job:
    def __init__(
        self, op: Operation, work: Callable[[_Job], CommandResult], scope: Callable[[], Scope]
    ) -> None:
        self.op = op
        self.work = work
        self.scope = scope
        self.held: Scope = DEVICE
        """The scope it runs in, once its turn came."""
        self.done = threading.Event()


class Service:
    """Operations, the event stream, and the lanes around the orchestrator."""

    def __init__(self, persist: Path, session: Any) -> None:
        self.persist = persist
        self.session = session
        self.lanes = Lanes()
        self.jobs: dict[str, _Job] = {}
        self.order: list[str] = []
        self.events: list[Event] = []
        self.seq = 0
        self.changed = threading.Condition()
        self.app_states: dict[str, str] = {}
        self.closing = False
        self._threads: list[threading.Thread] = []
        self._hosting = 0
        self._hosting_lock = threading.Lock()
        self._states_lock = threading.Lock()
        self._local = threading.local()
        wiring = session.orchestrator.wiring
        self._agent_progress = wiring.progress
        wiring.progress = self._progress  # each operation's own, by thread
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)

    def whole_device(self) -> contextlib.AbstractContextManager[None]:
        """Hold the whole device (the config loop): after the requests before it,
        before those after it."""
        return self.lanes.hold(DEVICE)

    # ------------------------------------------------------------ events

    def _emit(self, **fields: Any) -> None:
        with self.changed:
            self.seq += 1
            self.events.append(Event(seq=self.seq, time=_now(), **fields))
            del self.events[:-1000]
            self.changed.notify_all()

    def events_after(self, seq: int, timeout: float) -> list[Event]:
        with self.changed:
            if not any(e.seq > seq for e in self.events):
                self.changed.wait(timeout)
            return [e for e in self.events if e.seq > seq]

    def note_app_states(self) -> None:
        """Emit an event for each app whose state changed."""
        with self._states_lock:
            reports = self.session.orchestrator.reports()
            for app in reports.apps:
                state = app.state.name if hasattr(app.state, "name") else str(app.state)
                if self.app_states.get(app.app_id) != state:
                    self.app_states[app.app_id] = state
                    self._emit(kind="app", app=app.app_id, app_name=app.app_name, state=state)

    # ------------------------------------------------------------ operations

    def submit(
        self,
        kind: str,
        description: str,
        work: Callable[[_Job], CommandResult],
        scope: Callable[[], Scope] = lambda: DEVICE,
    ) -> Operation:
        """Queue `work` as an operation; it runs once `scope()` (asked again
        when its turn comes) is free."""
        op = Operation(
            id=str(uuid.uuid4()), kind=kind, description=description, state="queued", created=_now()
        )
        job = _Job(op, work, scope)
        with self.changed:
            self.jobs[op.id] = job
            self.order.append(op.id)
            for old in self.order[:-KEEP_DONE]:
                if self.jobs[old].done.is_set():
                    self.order.remove(old)
                    del self.jobs[old]
        self._emit(kind="operation", operation=op.model_copy())
        thread = threading.Thread(
            target=self._run_job, args=(job,), name=f"evesnap-op-{op.id[:8]}", daemon=True
        )
        with self.changed:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return op.model_copy()

    def command(self, request: CommandRequest) -> Operation:
        words = [a for a in request.argv if not a.startswith("-")][:3]
        return self.submit(
            "command",
            "evesnap " + " ".join(words),
            lambda job: self._run(job, request),
            lambda: self.scope_of(request.argv),
        )

    def scope_of(self, argv: list[str]) -> Scope:
        """The app a command works on, if it works on one app only; else the device."""
        try:
            path, params = command_words(argv)
            if tuple(path) not in APP_COMMANDS or not isinstance(params.get("app"), str):
                return DEVICE
            return frozenset({self.session.app_uuid(params["app"])})
        except Exception:  # the command itself will say what is wrong with it
            return DEVICE

    def get(self, op_id: str) -> Operation | None:
        job = self.jobs.get(op_id)
        return job.op.model_copy() if job else None

    def wait(self, op_id: str, timeout: float) -> Operation | None:
        job = self.jobs.get(op_id)
        if job is None:
            return None
        job.done.wait(timeout)
        return job.op.model_copy()

    def list(self) -> list[Operation]:
        return [self.jobs[i].op.model_copy() for i in list(self.order) if i in self.jobs]

    def cancel(self, op_id: str) -> Operation | None:
        """A queued operation is cancelled; a running one finishes its step (asked only)."""
        job = self.jobs.get(op_id)
        if job is None:
            return None
        job.op.cancel_requested = True
        return job.op.model_copy()

    def stop(self, timeout: float = 600.0) -> None:
        """No new operation starts; the running ones finish (the queued are cancelled)."""
        self.closing = True
        with self.changed:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _run_job(self, job: _Job) -> None:
        op = job.op
        while True:
            scope = job.scope()
            with self.lanes.hold(scope):
                if scope is not DEVICE and job.scope() != scope:
                    continue  # the app's name moved to another app while it waited: ask again
                if op.cancel_requested or self.closing:
                    op.state, op.finished = "cancelled", _now()
                    break
                job.held = scope
                op.state, op.started = "running", _now()
                self._emit(kind="operation", operation=op.model_copy())
                self._local.job = job
                self._host(+1)
                try:
                    op.result = job.work(job)
                    op.state = "done" if op.result.exit_code == 0 else "failed"
                except Exception as exc:
                    op.result = CommandResult(exit_code=1, stdout="", stderr=f"evesnap: error: {exc}\n")
                    op.state = "failed"
                finally:
                    self._host(-1)
                    self._local.job = None
                op.finished = _now()
                with contextlib.suppress(Exception):
                    self.note_app_states()
                break
        job.done.set()
        self._emit(kind="operation", operation=op.model_copy())

    def _host(self, delta: int) -> None:
        """CLI code in this process runs on the agent's session while any operation runs."""
        from evesnap_core.cli import session as sessions

        with self._hosting_lock:
            self._hosting += delta
            sessions.hosted = self.session if self._hosting else None

    def _progress(self, done: int, total: int) -> None:
        job = getattr(self._local, "job", None)
        if job is not None:
            job.op.progress = Progress(done=done, total=total)
        elif self._agent_progress is not None:
            self._agent_progress(done, total)

    # ------------------------------------------------------------ commands

    def _run(self, job: _Job, request: CommandRequest) -> CommandResult:
        """Run an `evesnap` command line with the agent's session, in its lane.

        A whole-device command runs in the client's folder (it may name files
        there); a one-app command names no file and leaves the folder alone."""
        from evesnap_core.cli.main import cli

        argv = list(request.argv)
        stdin_file = None
        if request.stdin is not None and ("/dev/stdin" in argv or "-" in argv):
            fd, stdin_file = tempfile.mkstemp(prefix="evesnap-stdin-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(request.stdin)
            argv = [stdin_file if a in ("/dev/stdin", "-") else a for a in argv]

        alone = job.held is DEVICE
        resolver = self.session.orchestrator.wiring.resolver
        saved_base = resolver.base_dir
        old_cwd = Path.cwd()
        out, err = sys.stdout, sys.stderr
        assert isinstance(out, _Router) and isinstance(err, _Router)
        code = 0
        try:
            if alone:
                os.chdir(request.cwd)
            with out.capture() as stdout, err.capture() as stderr:
                try:
                    cli.main(args=argv, prog_name="evesnap", standalone_mode=True)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except OSError as exc:
                    where = f"{exc.filename}: " if exc.filename else ""
                    print(f"evesnap: error: {where}{exc.strerror or exc}", file=sys.stderr)
                    code = 2
        finally:
            if alone:
                resolver.base_dir = saved_base
                os.chdir(old_cwd)
            if stdin_file:
                with contextlib.suppress(OSError):
                    Path(stdin_file).unlink()
        text = stdout.getvalue()
        data = None
        with contextlib.suppress(ValueError):
            data = json.loads(text) if text.strip()[:1] in ("{", "[") else None
        return CommandResult(exit_code=code, stdout=text, stderr=stderr.getvalue(), data=data)

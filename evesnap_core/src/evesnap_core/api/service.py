"""The agent's one orchestrator, shared by the controller's config loop and
local requests: every request is an operation run by one worker thread, in
order, under the same lock the config loop takes -- so requests queue behind
each other and behind a reconcile, and none is ever refused as "locked".

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
import queue
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

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


class _Job:
    def __init__(self, op: Operation, work: Callable[[_Job], CommandResult]) -> None:
        self.op = op
        self.work = work
        self.done = threading.Event()


class Service:
    """Operations, the event stream, and the lock around the orchestrator."""

    def __init__(self, persist: Path, session: Any) -> None:
        self.persist = persist
        self.session = session
        self.lock = threading.RLock()
        self.jobs: dict[str, _Job] = {}
        self.order: list[str] = []
        self.queue: queue.Queue[_Job | None] = queue.Queue()
        self.events: list[Event] = []
        self.seq = 0
        self.changed = threading.Condition()
        self.app_states: dict[str, str] = {}
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)
        self.worker = threading.Thread(target=self._work, name="evesnap-operations", daemon=True)
        self.worker.start()

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
        """Emit an event for each app whose state changed (call with the lock held)."""
        reports = self.session.orchestrator.reports()
        for app in reports.apps:
            state = app.state.name if hasattr(app.state, "name") else str(app.state)
            if self.app_states.get(app.app_id) != state:
                self.app_states[app.app_id] = state
                self._emit(kind="app", app=app.app_id, app_name=app.app_name, state=state)

    # ------------------------------------------------------------ operations

    def submit(self, kind: str, description: str, work: Callable[[_Job], CommandResult]) -> Operation:
        op = Operation(
            id=str(uuid.uuid4()), kind=kind, description=description, state="queued", created=_now()
        )
        job = _Job(op, work)
        with self.changed:
            self.jobs[op.id] = job
            self.order.append(op.id)
            for old in self.order[:-KEEP_DONE]:
                if self.jobs[old].done.is_set():
                    self.order.remove(old)
                    del self.jobs[old]
        self._emit(kind="operation", operation=op.model_copy())
        self.queue.put(job)
        return op.model_copy()

    def command(self, request: CommandRequest) -> Operation:
        words = [a for a in request.argv if not a.startswith("-")][:3]
        return self.submit("command", "evesnap " + " ".join(words), lambda job: self._run(job, request))

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

    def stop(self) -> None:
        self.queue.put(None)

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            op = job.op
            if op.cancel_requested:
                op.state, op.finished = "cancelled", _now()
                job.done.set()
                self._emit(kind="operation", operation=op.model_copy())
                continue
            with self.lock:
                op.state, op.started = "running", _now()
                self._emit(kind="operation", operation=op.model_copy())
                try:
                    op.result = job.work(job)
                    op.state = "done" if op.result.exit_code == 0 else "failed"
                except Exception as exc:
                    op.result = CommandResult(exit_code=1, stdout="", stderr=f"evesnap: error: {exc}\n")
                    op.state = "failed"
                op.finished = _now()
                with contextlib.suppress(Exception):
                    self.note_app_states()
            job.done.set()
            self._emit(kind="operation", operation=op.model_copy())

    # ------------------------------------------------------------ commands

    def _run(self, job: _Job, request: CommandRequest) -> CommandResult:
        """Run an `evesnap` command line with the agent's session (lock held)."""
        from evesnap_core.cli import session as sessions
        from evesnap_core.cli.main import cli

        argv = list(request.argv)
        stdin_file = None
        if request.stdin is not None and ("/dev/stdin" in argv or "-" in argv):
            fd, stdin_file = tempfile.mkstemp(prefix="evesnap-stdin-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(request.stdin)
            argv = [stdin_file if a in ("/dev/stdin", "-") else a for a in argv]

        def progress(done: int, total: int) -> None:
            job.op.progress = Progress(done=done, total=total)

        wiring = self.session.orchestrator.wiring  # what the orchestrator's parts share
        saved_progress, saved_base = wiring.progress, wiring.resolver.base_dir
        old_cwd = Path.cwd()
        out, err = sys.stdout, sys.stderr
        assert isinstance(out, _Router) and isinstance(err, _Router)
        code = 0
        try:
            os.chdir(request.cwd)
            wiring.progress = progress
            sessions.hosted = self.session
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
            sessions.hosted = None
            wiring.progress, wiring.resolver.base_dir = saved_progress, saved_base
            os.chdir(old_cwd)
            if stdin_file:
                with contextlib.suppress(OSError):
                    Path(stdin_file).unlink()
        text = stdout.getvalue()
        data = None
        with contextlib.suppress(ValueError):
            data = json.loads(text) if text.strip()[:1] in ("{", "[") else None
        return CommandResult(exit_code=code, stdout=text, stderr=stderr.getvalue(), data=data)

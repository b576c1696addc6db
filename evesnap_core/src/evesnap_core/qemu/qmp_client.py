"""A synchronous QMP client with a time limit on everything, over ``qemu.qmp``.

``qemu.qmp.QMPClient`` is asyncio; backends and runtimes are not. Each client
owns a private event loop, so it never touches (or is broken by) a loop the
caller runs. Every wait is bounded: QEMU serves one client per QMP socket and
makes a second one wait, silently and forever, for the greeting; without a
connect timeout a busy monitor hangs the caller. QMP errors become
:class:`~evesnap_core.errors.QmpError` keeping QEMU's own error class and text.

Events (STOP, RESUME, JOB_STATUS_CHANGE...) are kept as they arrive, so that a
caller can prove that an operation never paused the guest: watch from a second
QMP monitor (see :class:`evesnap_core.testing.qemu_vm.QemuProcess`) and read
:meth:`QmpClient.events` afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from evesnap_core.errors import QmpDisconnected, QmpError, QmpTimeout

if TYPE_CHECKING:
    import asyncio

    from qemu.qmp import QMPClient

# asyncio and qemu.qmp (with ssl) are imported when a client is first made, not with
# this module: ~25 ms of every command's start (evesnap plugins, status) that never
# talks to a QEMU, since the toolkit and the runtimes name QmpClient

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0

HMP_FAILURE_MARKS = ("Error:", "failed", "Permission conflict")
"""How HMP (and qemu-io inside it) says a command failed: in its output text."""


class _RaisedInstead(logging.Filter):
    """qemu.qmp logs a failure at ERROR and then raises it; every failure here is
    raised as a typed QmpError, so the log line only doubles the message (and
    breaks a CLI's one-line error). Debug records still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


_RAISED_INSTEAD = _RaisedInstead()


class QmpEvent(BaseModel):
    """One asynchronous QMP event."""

    model_config = ConfigDict(frozen=True)

    event: str
    data: Mapping[str, Any] = {}
    seconds: int = 0
    microseconds: int = 0


class RunStatus(BaseModel):
    """``query-status``: whether the guest's CPUs run, and QEMU's run state."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: str
    running: bool


class QmpClient:
    """One QMP connection, used from synchronous code; a context manager."""

    def __init__(
        self,
        socket: Path,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.socket = socket
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        import asyncio

        from qemu.qmp import QMPClient

        self._loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._client: QMPClient = QMPClient(f"evesnap:{socket.name}")
        self._client.logger.addFilter(_RAISED_INSTEAD)  # one filter object: never added twice
        self._seen: list[QmpEvent] = []

    # ------------------------------------------------------------ connection

    def __enter__(self) -> QmpClient:
        self.connect()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _sync(self, what: str, step: Awaitable[T], timeout: float) -> T:
        import asyncio

        from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPError, StateError

        try:
            return self._loop.run_until_complete(asyncio.wait_for(step, timeout))
        except TimeoutError:
            raise QmpTimeout(str(self.socket), what, f"no answer within {timeout:g} s") from None
        except ExecuteError as exc:
            raise QmpError(str(self.socket), what, f"{exc.error_class}: {exc}") from exc
        except (
            ExecInterruptedError,
            ConnectError,
            StateError,
            EOFError,
            ConnectionError,
            FileNotFoundError,
        ) as exc:
            raise QmpDisconnected(str(self.socket), what, f"{type(exc).__name__}: {exc}") from exc
        except (QMPError, OSError) as exc:
            raise QmpError(str(self.socket), what, f"{type(exc).__name__}: {exc}") from exc

    def connect(self) -> None:
        """Connect and negotiate; QmpTimeout when QEMU does not greet in time
        (typically: another client holds this monitor)."""
        try:
            self._sync("connect", self._client.connect(str(self.socket)), self.connect_timeout)
        except QmpError:
            self.close()
            raise

    def close(self) -> None:
        """Disconnect and release the private loop; safe to call twice."""
        if self._loop.is_closed():
            return
        import asyncio

        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), 5))
        self._loop.close()

    # ------------------------------------------------------------ commands

    def command(
        self, name: str, arguments: Mapping[str, object] | None = None, timeout: float | None = None
    ) -> Any:
        """Run one QMP command and return its ``return`` value."""
        limit = self.command_timeout if timeout is None else timeout
        return self._sync(name, self._client.execute(name, arguments), limit)

    def hmp(self, command_line: str, timeout: float | None = None) -> str:
        """Run a human-monitor command; HMP reports failure only in its text, so a
        text that says so raises QmpError."""
        text = str(self.command("human-monitor-command", {"command-line": command_line}, timeout) or "")
        if any(mark in text for mark in HMP_FAILURE_MARKS):
            raise QmpError(str(self.socket), f"HMP {command_line!r}", text.strip())
        return text

    def qemu_io(self, node_name: str, command: str, timeout: float | None = None) -> str:
        """Run a qemu-io command (``write -P 0xab 0 1M``, ``flush``...) on the drive
        attached to `node_name`, to change a disk with no guest OS.

        It goes through the guest device: a new writer on the node itself
        conflicts with the device's write permission. QEMU 7.2 prints qemu-io's
        own output (read results, I/O errors) on its stdout, NOT on the monitor:
        only a failure to reach the drive comes back here. Verify data from
        outside (``qemu-io -U -r`` after a ``flush``)."""
        device = self.device_of(node_name)
        if '"' in command or "\\" in command:
            raise ValueError(f"qemu-io command {command!r} must not contain quotes or backslashes")
        return self.hmp(f'qemu-io -d {device} "{command}"', timeout)

    def device_of(self, node_name: str) -> str:
        """The qdev path of the guest device whose drive is `node_name`."""
        for block in self.command("query-block"):
            inserted = block.get("inserted") or {}
            if inserted.get("node-name") == node_name and block.get("qdev"):
                return str(block["qdev"])
        raise QmpError(str(self.socket), "query-block", f"no guest device uses node {node_name!r}")

    def query_status(self) -> RunStatus:
        """The guest's run state (``running`` while it was never paused)."""
        return RunStatus.model_validate(self.command("query-status"))

    def transaction(self, actions: Sequence[Mapping[str, object]], timeout: float | None = None) -> None:
        """Run `actions` (``{"type": ..., "data": {...}}``) as one QMP transaction:
        QEMU applies all of them or none."""
        self.command("transaction", {"actions": list(actions)}, timeout)

    # ------------------------------------------------------------ events

    def events(self) -> list[QmpEvent]:
        """Every event received on this connection so far, oldest first.

        A round trip first: QEMU sends an event before any later reply, so
        everything emitted before this call has then been read."""
        self.command("query-version")
        self._seen.extend(_event(dict(msg)) for msg in self._client.events.clear())
        return list(self._seen)

    def event_names(self) -> list[str]:
        """The names of :meth:`events`, for quick assertions."""
        return [e.event for e in self.events()]


def _event(msg: dict[str, Any]) -> QmpEvent:
    stamp = msg.get("timestamp") or {}
    return QmpEvent(
        event=str(msg["event"]),
        data=msg.get("data") or {},
        seconds=int(stamp.get("seconds", 0)),
        microseconds=int(stamp.get("microseconds", 0)),
    )

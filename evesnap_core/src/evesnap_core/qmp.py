"""A short synchronous QMP session with a running QEMU, for backends and runtimes.

QEMU's QMP socket takes one client at a time; evesnap connects, sends a few
commands, and disconnects. Every wait has a timeout, and a QMP error becomes a
typed evesnap error that keeps QEMU's own text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from evesnap_core.errors import EvesnapError

DEFAULT_TIMEOUT = 30.0


class QmpError(EvesnapError):
    """QEMU refused a QMP command, or could not be reached."""

    def __init__(self, where: str, command: str, detail: str) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"QMP {command} on {where} failed: {detail}")


class QmpSession:
    def __init__(self, sock: Path, client: QEMUMonitorProtocol) -> None:
        self.sock = sock
        self.client = client

    def command(self, command: str, /, **arguments: Any) -> Any:
        """Run one command; its ``return`` value, or QmpError with QEMU's error text."""
        try:
            reply = self.client.cmd_raw(command, arguments or None)
        except (TimeoutError, QMPError, OSError) as exc:
            raise QmpError(str(self.sock), command, f"{type(exc).__name__}: {exc}") from exc
        if "error" in reply:
            err = reply["error"]
            raise QmpError(str(self.sock), command, f"{err.get('class', '?')}: {err.get('desc', err)}")
        return reply.get("return")

    def hmp(self, command_line: str) -> str:
        """A human-monitor command (e.g. ``qemu-io vol0 "write -P 1 0 4k"``); its output."""
        out = self.command("human-monitor-command", **{"command-line": command_line})
        text = str(out or "")
        lowered = text.lower()
        # HMP reports failures as text only: "write failed: ...", "Permission conflict ..."
        if any(
            word in lowered for word in ("failed", "error", "conflict", "could not", "cannot", "not found")
        ):
            raise QmpError(str(self.sock), f"HMP {command_line!r}", text.strip())
        return text

    def events(self) -> list[dict[str, Any]]:
        """Events QEMU sent since the session started (STOP, RESUME, JOB_STATUS_CHANGE...)."""
        return list(self.client.get_events(wait=False))


@contextlib.contextmanager
def qmp_session(sock: Path, timeout: float = DEFAULT_TIMEOUT) -> Iterator[QmpSession]:
    """Connect to QEMU's QMP socket for the length of a ``with`` block."""
    client = QEMUMonitorProtocol(str(sock))
    try:
        client.connect(negotiate=True)
        client.settimeout(timeout)
    except (QMPError, OSError) as exc:
        with contextlib.suppress(Exception):
            client.close()
        raise QmpError(str(sock), "connect", f"{type(exc).__name__}: {exc}") from exc
    try:
        yield QmpSession(sock, client)
    finally:
        with contextlib.suppress(Exception):
            client.close()

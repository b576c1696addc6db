"""A synchronous client of the QEMU guest agent (QGA), every call bounded by a timeout.

The agent (``qemu-ga`` in the guest) is reached over the host end of a
virtio-serial port, a unix socket QEMU listens on (the app runtime creates it,
``org.qemu.guest_agent.0``). Its protocol looks like QMP without a greeting,
and with two traps that this client handles:

- The stream carries whatever an earlier client left unread (a reply that
  came after that client gave up). So each connection starts with
  ``guest-sync-delimited``: a 0xFF byte first (an invalid JSON byte, which
  resets the agent's parser whatever half a request it holds), then the
  command with a random id; the agent answers with a 0xFF sentinel and the
  same id, and everything before the sentinel, and any reply not carrying
  our id, is dropped.
- A guest without an agent, or a hung one, never answers, and QEMU accepts
  the connection anyway. Every call therefore has a deadline; after a timeout
  the stream is out of step (the late answer may still come), so the
  connection is closed and the next call connects and syncs again.

Only what evesnap needs: ping, and the filesystem freeze (freeze, thaw,
status) that makes a live snapshot filesystem-consistent.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from evesnap_core.errors import GuestAgentError, GuestAgentTimeout

DEFAULT_TIMEOUT = 5.0
SENTINEL = b"\xff"
MAX_REPLY_BYTES = 1 << 20
"""No answer evesnap asks for is longer; a longer one is a broken stream."""

FreezeStatus = Literal["thawed", "frozen"]


class GuestAgent:
    """One connection to a guest agent; a context manager (connect and sync on enter)."""

    def __init__(self, socket_path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    # ------------------------------------------------------------ connection

    def __enter__(self) -> GuestAgent:
        self.connect()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _fail(self, command: str, detail: str, timeout: bool = False) -> GuestAgentError:
        self.close()  # out of step now: the next call starts afresh
        kind = GuestAgentTimeout if timeout else GuestAgentError
        return kind(str(self.socket_path), command, detail)

    def connect(self, timeout: float | None = None) -> None:
        """Connect and sync the stream (``guest-sync-delimited``), within `timeout`."""
        self.close()
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(limit)
        try:
            sock.connect(str(self.socket_path))
        except TimeoutError:
            sock.close()
            raise self._fail("connect", f"no connection within {limit:g} s", timeout=True) from None
        except OSError as exc:
            sock.close()
            raise self._fail("connect", f"{type(exc).__name__}: {exc}") from exc
        self._sock = sock
        self._buffer = b""
        self._sync(deadline)

    def close(self) -> None:
        """Disconnect; safe to call twice."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._buffer = b""

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # ------------------------------------------------------------ wire

    def _send(self, command: str, payload: bytes, deadline: float) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock.sendall(payload)
        except TimeoutError:
            raise self._fail(command, "could not send in time", timeout=True) from None
        except OSError as exc:
            raise self._fail(command, f"{type(exc).__name__}: {exc}") from exc

    def _fill(self, command: str, deadline: float, limit: float) -> None:
        """Read more bytes into the buffer before `deadline`."""
        assert self._sock is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._fail(command, f"no answer within {limit:g} s", timeout=True)
        try:
            self._sock.settimeout(left)
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise self._fail(command, f"no answer within {limit:g} s", timeout=True) from None
        except OSError as exc:
            raise self._fail(command, f"{type(exc).__name__}: {exc}") from exc
        if not chunk:
            raise self._fail(command, "the agent's socket closed")
        self._buffer += chunk
        if len(self._buffer) > MAX_REPLY_BYTES:
            raise self._fail(command, f"an answer longer than {MAX_REPLY_BYTES} bytes")

    def _message(self, command: str, deadline: float, limit: float) -> dict[str, Any]:
        """The next JSON object of the stream (the agent ends each with a newline)."""
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                text = line.strip()
                if not text:
                    continue
                try:
                    message = json.loads(text)
                except ValueError:
                    raise self._fail(command, f"not JSON: {text[:200]!r}") from None
                if not isinstance(message, dict):
                    raise self._fail(command, f"not a JSON object: {text[:200]!r}")
                return message
            self._fill(command, deadline, limit)

    def _sync(self, deadline: float) -> None:
        token = secrets.randbelow(1 << 31)
        request = {"execute": "guest-sync-delimited", "arguments": {"id": token}}
        self._send("guest-sync-delimited", SENTINEL + json.dumps(request).encode() + b"\n", deadline)
        limit = self.timeout
        while True:  # everything before the agent's sentinel is stale
            at = self._buffer.find(SENTINEL)
            if at >= 0:
                self._buffer = self._buffer[at + 1 :]
                break
            self._buffer = b""
            self._fill("guest-sync-delimited", deadline, limit)
        while True:  # a parse error the reset byte caused, or a stale reply, may come first
            message = self._message("guest-sync-delimited", deadline, limit)
            if message.get("return") == token:
                return

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Run one agent command and return its ``return`` value (connecting first if needed)."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        if self._sock is None:
            self.connect(limit)
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._send(command, json.dumps(request).encode() + b"\n", deadline)
        message = self._message(command, deadline, limit)
        if "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            cls, desc = error.get("class", "Error"), error.get("desc", str(message["error"]))
            raise GuestAgentError(str(self.socket_path), command, f"{cls}: {desc}")
        if "return" not in message:
            raise self._fail(command, f"an answer without 'return': {json.dumps(message)[:200]}")
        return message["return"]

    # ------------------------------------------------------------ commands

    def ping(self, timeout: float | None = None) -> None:
        """``guest-ping``: the agent is there and answers."""
        self.execute("guest-ping", timeout=timeout)

    def freeze(self, timeout: float | None = None) -> int:
        """``guest-fsfreeze-freeze``: sync and freeze every freezable filesystem of
        the guest; the number frozen."""
        return int(self.execute("guest-fsfreeze-freeze", timeout=timeout))

    def thaw(self, timeout: float | None = None) -> int:
        """``guest-fsfreeze-thaw``: the number of filesystems thawed (0: none was frozen)."""
        return int(self.execute("guest-fsfreeze-thaw", timeout=timeout))

    def freeze_status(self, timeout: float | None = None) -> FreezeStatus:
        """``guest-fsfreeze-status``: ``frozen`` or ``thawed``."""
        status = str(self.execute("guest-fsfreeze-status", timeout=timeout))
        if status not in ("thawed", "frozen"):
            raise GuestAgentError(
                str(self.socket_path), "guest-fsfreeze-status", f"unknown status {status!r}"
            )
        return "frozen" if status == "frozen" else "thawed"


def thaw(socket_path: Path, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Connect, thaw, disconnect: what recovery and the watchdog do."""
    with GuestAgent(socket_path, timeout=timeout) as agent:
        return agent.thaw()

"""A fake QEMU guest agent on a unix socket, for unit tests of the client's framing.

Only for the logic that a real agent cannot be made to show on demand: stale
bytes left by an earlier client, a reset byte, an agent that accepts the
connection and never answers (a hung ``qemu-ga``, or none in the guest), a
freeze that never returns. It speaks what ``qemu-ga`` speaks on the wire
(newline-ended JSON, ``guest-sync-delimited`` answered after a 0xFF byte, a
parse error for the reset byte) and keeps the freeze state. The real agent
is tested in the guest VM harness (``contrib/guestvm``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path
from typing import Any, Literal

Mode = Literal["normal", "silent", "hang-freeze", "stale"]


class FakeGuestAgent:
    """Serves one client at a time on `path` (as QEMU's chardev does) in a thread."""

    def __init__(self, path: Path, mode: Mode = "normal") -> None:
        self.path = path
        self.mode: Mode = mode
        self.frozen = False
        self.commands: list[str] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeGuestAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        if self.mode == "stale":  # what an earlier client left unread
            conn.sendall(b'{"return": 12345}\n{"return": {}}\n{"ret')
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            if self.mode == "silent":
                continue
            buffer += chunk
            while True:
                if buffer.startswith(b"\xff"):  # the reset byte: qemu-ga's parser says so
                    buffer = buffer[1:]
                    self._send(conn, {"error": {"class": "GenericError", "desc": "JSON parse error"}})
                    continue
                line, newline, rest = buffer.partition(b"\n")
                if not newline:
                    break
                buffer = rest
                if line.strip():
                    self._answer(conn, json.loads(line))

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, Any], sentinel: bool = False) -> None:
        with contextlib.suppress(OSError):
            conn.sendall((b"\xff" if sentinel else b"") + json.dumps(message).encode() + b"\n")

    def _answer(self, conn: socket.socket, request: dict[str, Any]) -> None:
        name = str(request.get("execute"))
        self.commands.append(name)
        if name == "guest-sync-delimited":
            self._send(conn, {"return": request["arguments"]["id"]}, sentinel=True)
        elif name == "guest-ping":
            self._send(conn, {"return": {}})
        elif name == "guest-fsfreeze-status":
            self._send(conn, {"return": "frozen" if self.frozen else "thawed"})
        elif name == "guest-fsfreeze-freeze":
            if self.mode == "hang-freeze":
                self.frozen = True
                return  # never answers (a guest stuck flushing)
            if self.frozen:
                self._send(conn, {"error": {"class": "GenericError", "desc": "already frozen"}})
                return
            self.frozen = True
            self._send(conn, {"return": 2})
        elif name == "guest-fsfreeze-thaw":
            count, self.frozen = (2 if self.frozen else 0), False
            self._send(conn, {"return": count})
        else:
            self._send(conn, {"error": {"class": "CommandNotFound", "desc": f"no command {name}"}})

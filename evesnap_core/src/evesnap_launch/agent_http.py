"""One keep-alive HTTP connection to the agent's AF_UNIX socket (http.client).

Apart from `client` so that a command with no agent to ask never imports
http.client (and the email parser behind it).
"""

from __future__ import annotations

import http.client
import json
import socket
from http.client import HTTPException
from pathlib import Path
from typing import Any

__all__ = ["Client", "HTTPException"]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """One keep-alive connection to the agent's socket."""

    def __init__(self, path: Path, timeout: float = 90.0) -> None:
        self.path = path
        self.conn = _UnixConnection(str(path), timeout)

    def request(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, url, body=data, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()

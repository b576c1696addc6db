"""The agent's API from the CLI, with the standard library only: http.client
over an AF_UNIX socket (no HTTP library to import: the CLI's cold start stays
a few tens of milliseconds; docs/performance.md). `agent_http` (http.client and
the email parser it imports, ~15 ms) is imported only once the socket is there:
a command with no agent to ask works directly without paying for it.

`forward` is the CLI's client mode: when an agent answers on the persist
folder's socket, the command line runs inside it as an operation and its
output, progress and exit code come back as if it ran here.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evesnap_launch.agent_http import Client

SOCKET_NAME = "evesnap.sock"  # = evesnap_core.api.SOCKET_NAME
LOCAL_ONLY = {"agent", "conformance", "monitor"}


def runtime_dir() -> Path:
    """= evesnap_core.settings.default_runtime_dir (kept equal by a test)."""
    env = os.environ.get("EVESNAP_RUNTIME_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/evesnap")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "evesnap" if xdg else Path(f"/tmp/evesnap-{os.geteuid()}")  # noqa: S108


def persist_dir(argv: list[str]) -> Path:
    """--persist as click reads it, else = evesnap_core.settings.default_persist_dir."""
    for i, arg in enumerate(argv):
        if arg == "--persist" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--persist="):
            return Path(arg.split("=", 1)[1])
    env = os.environ.get("EVESNAP_PERSIST")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/evesnap")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "evesnap"


def _command(argv: list[str]) -> str | None:
    """The command name, None for --help / --version / no command."""
    if any(arg in ("-h", "--help", "--version") for arg in argv):
        return None
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--persist", "--runtime"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def connect(persist: Path) -> Client | None:
    """A client of the agent that runs on `persist`, or None (no agent, or another's)."""
    try:
        path = runtime_dir() / SOCKET_NAME
        if not path.exists():
            return None
    except (OSError, RuntimeError, KeyError):  # an unreadable folder, no HOME: no agent to ask
        return None
    from evesnap_launch.agent_http import Client, HTTPException

    client = Client(path)
    try:
        status, info = client.request("GET", "/v1/agent")
    except (OSError, HTTPException, ValueError):
        client.close()
        return None
    try:
        same = status == 200 and Path(info["persist"]).samefile(persist)
    except (OSError, KeyError, TypeError):
        same = False
    if not same:
        client.close()
        return None
    return client


def forward(argv: list[str]) -> int | None:
    """Run `argv` through the agent on its persist folder; its exit code, or
    None when no agent runs there (the CLI then works directly)."""
    command = _command(argv)
    if command is None or command in LOCAL_ONLY or os.environ.get("EVESNAP_DIRECT"):
        return None
    try:
        persist = persist_dir(argv)
    except (RuntimeError, KeyError):  # no HOME: the CLI itself says what is wrong
        return None
    client = connect(persist)
    if client is None:
        return None
    stdin = None
    if ("/dev/stdin" in argv or "-" in argv) and not sys.stdin.isatty():
        stdin = sys.stdin.read()
    status, op = client.request(
        "POST", "/v1/operations", {"argv": argv, "cwd": str(Path.cwd()), "stdin": stdin}
    )
    if status != 202:
        sys.stderr.write(f"evesnap: error: the agent refused the command: {op}\n")
        return 1
    shown = _Progress()
    try:
        while op["state"] in ("queued", "running"):
            status, op = client.request("GET", f"/v1/operations/{op['id']}?wait=0.5")
            shown.update(op.get("progress"))
    except _Stop as stop:
        name = signal.Signals(stop.signum).name
        client.close()  # it may be mid-answer: ask on a new connection
        from evesnap_launch.agent_http import Client, HTTPException

        canceller = Client(client.path, timeout=10)
        try:
            canceller.request("DELETE", f"/v1/operations/{op['id']}")
        except (OSError, HTTPException, ValueError):
            pass
        finally:
            canceller.close()
        sys.stderr.write(
            f"evesnap: interrupted by {name}; the agent finishes operation {op['id']} "
            "if it started (evesnap monitor shows it)\n"
        )
        return 128 + stop.signum
    finally:
        client.close()
    shown.end()
    result = op.get("result") or {"exit_code": 1, "stdout": "", "stderr": "evesnap: error: cancelled\n"}
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    return int(result["exit_code"])


class _Stop(BaseException):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signum)


class _Progress:
    """The operation's progress on one line, for a person at a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.drawn = False
        self.last = 0.0

    def update(self, progress: dict[str, int] | None) -> None:
        if not self.tty or not progress or time.monotonic() - self.last < 0.2:
            return
        self.last = time.monotonic()
        done, total = progress["done"], progress["total"]
        percent = 100 * done // total if total else 100
        sys.stderr.write(f"\r  copying {percent:3d}% ({done >> 20}/{total >> 20} MiB)")
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")


def forward_when_served(argv: list[str], wait: float = 10.0) -> int | None:
    """The persist folder is locked: by an agent still starting its API? Wait for
    its socket (at most `wait` seconds) and go through it; None if none comes."""
    if os.environ.get("EVESNAP_DIRECT"):
        return None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        client = connect(persist_dir(argv))
        if client is not None:
            client.close()
            return forward(argv)
        time.sleep(0.1)
    return None

"""The `evesnap` command's first lines, before anything heavy is imported.

Importing the CLI (pydantic, click, the core) takes a noticeable moment; a
SIGINT or SIGTERM in it would otherwise print a KeyboardInterrupt traceback
from deep inside an import. Here the signals are only noted while the CLI is
imported (nothing has been changed yet), then the command runs with the CLI's
own handlers (`evesnap_core.cli.interrupt`).

Before that, the client mode (`client.forward`): when an agent serves the
persist folder, the command runs inside it through its socket, and the CLI
never imports the core at all.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

_early: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    _early.append(signum)


def main() -> None:
    from evesnap_launch import client

    signal.signal(signal.SIGINT, client.raise_stop)
    signal.signal(signal.SIGTERM, client.raise_stop)
    try:
        code = client.forward(sys.argv[1:])
    except client._Stop as stop:  # before the operation was sent: nothing happened
        sys.stderr.write(f"evesnap: interrupted by {signal.Signals(stop.signum).name}; nothing was changed\n")
        raise SystemExit(128 + stop.signum) from None
    if code is not None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        raise SystemExit(code)
    signal.signal(signal.SIGINT, _note)
    signal.signal(signal.SIGTERM, _note)
    from evesnap_core.cli.main import main as cli_main

    if _early:
        name = signal.Signals(_early[0]).name
        sys.stderr.write(f"evesnap: interrupted by {name} while starting; nothing was changed\n")
        raise SystemExit(128 + _early[0])
    try:
        cli_main()
    finally:
        # done: a signal from now on would only hit the interpreter's shutdown
        # (which restores the default handlers and dies silently); the command's
        # own exit code stands
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

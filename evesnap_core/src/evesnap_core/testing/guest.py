"""Driving a real guest booted by the guest VM harness (``contrib/guestvm``), for tests and benchmarks.

The guest says ``guestvm: READY`` on its serial console (the app's
``console.log``) once ``qemu-ga`` runs; after that the host runs commands in it
through the agent (``guest-exec``, ``guest-exec-status``: standard qemu-ga
commands), so that no other channel into the guest is needed.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path

from evesnap_core.qemu.guest_agent import GuestAgent

READY = "guestvm: READY"


def wait_ready(console: Path, timeout: float = 240.0) -> str:
    """Wait for the guest's READY line on `console`; the console text so far.
    TimeoutError (with the console's tail) if it does not come."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace") if console.exists() else ""
        if READY in text:
            return text
        time.sleep(0.2)
    raise TimeoutError(f"the guest did not get ready within {timeout:g} s; console:\n{text[-3000:]}")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def guest_exec(sock: Path, argv: list[str], timeout: float = 60.0, wait: bool = True) -> Ran | int:
    """Run `argv` in the guest through its agent; its exit code and output (or,
    with ``wait=False``, its guest pid at once: a background workload)."""
    with GuestAgent(sock, timeout=10) as agent:
        started = agent.execute(
            "guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True}, timeout=30
        )
        pid = int(started["pid"])
        if not wait:
            return pid
        deadline = time.monotonic() + timeout
        while True:
            status = agent.execute("guest-exec-status", {"pid": pid}, timeout=10)
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv} still running in the guest after {timeout:g} s")
            time.sleep(0.1)

    def text(key: str) -> str:
        return base64.b64decode(status.get(key, "")).decode(errors="replace")

    return Ran(int(status.get("exitcode", -1)), text("out-data"), text("err-data"))


def sh(sock: Path, script: str, timeout: float = 60.0) -> Ran:
    """Run a shell script in the guest and wait for it."""
    ran = guest_exec(sock, ["/bin/sh", "-c", script], timeout=timeout)
    assert isinstance(ran, Ran)
    return ran

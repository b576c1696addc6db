"""Children never outlive evesnap unseen: PR_SET_PDEATHSIG kills a child when
the process that started it is SIGKILLed, and a child a dead evesnap left on
the same persist folder is found and waited for (or killed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evesnap_core import process


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not process.alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("via", ["setpriv", "preexec_fn"])
def test_a_child_dies_with_a_killed_evesnap(tmp_path: Path, via: str) -> None:
    """Both ways of setting the death-signal: setpriv before the tool (a vfork,
    the default here), and a preexec_fn (a fork, where setpriv is missing)."""
    marker = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import threading
        from pathlib import Path
        from evesnap_core import process
        if {via!r} == "preexec_fn":
            process._setpriv = lambda: None
        process.set_owner(Path({str(tmp_path)!r}))
        threading.Thread(target=process.run, args=(["sleep", "60"],), daemon=True).start()
        import time
        while True:
            time.sleep(0.1)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        child = None
        while child is None and time.monotonic() < deadline:
            for pid in process.pids():
                if process.cmdline(pid) == ["sleep", "60"] and process._owner_mark(pid) == (
                    f"{process.persist_tag(tmp_path)}:{parent.pid}"
                ):
                    child = pid
            time.sleep(0.05)
        assert child is not None, "the child never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(child), "the child outlived the SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
    del marker


def test_children_start_through_setpriv_here_and_a_missing_tool_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every Debian has util-linux's setpriv: the fast launch is the one used
    (the test above would otherwise only test the fallback twice). A tool that
    is not installed is FileNotFoundError naming it on both launches, as Popen
    says it, never setpriv's exit status."""
    launched, preexec = process.dying_with_parent(["qemu-img", "info"])
    assert preexec is None and launched[1:] == ["--pdeathsig", "KILL", "--", "qemu-img", "info"]
    stat = process.run(["cat", "/proc/self/stat"]).stdout.decode()
    comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    assert comm == "cat" and int(fields[1]) == os.getpid()  # setpriv became the tool: our child, our pid
    tools = tmp_path / "tools"  # a tool found only on the child's own PATH is found, as Popen finds it
    tools.mkdir()
    (tools / "evesnap-only-here").symlink_to(shutil.which("true") or "/bin/true")
    assert process.run(["evesnap-only-here"], env={"PATH": str(tools)}).returncode == 0
    for fallback in (False, True):
        if fallback:
            monkeypatch.setattr(process, "_setpriv", lambda: None)
        with pytest.raises(FileNotFoundError) as missing:
            process.run(["evesnap-no-such-tool", "--version"])
        assert "evesnap-no-such-tool" in str(missing.value)


def test_an_orphan_on_the_same_persist_folder_is_waited_for(tmp_path: Path) -> None:
    tag = process.persist_tag(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the evesnap that started the child
    env = {**os.environ, process.OWNER_ENV: f"{tag}:{dead.pid}"}
    short = subprocess.Popen(["sleep", "0.5"], env=env)
    other = subprocess.Popen(["sleep", "30"], env={**os.environ, process.OWNER_ENV: f"zzzzzzzz:{dead.pid}"})
    try:
        started = time.monotonic()
        found = process.wait_for_orphans(tag, timeout=10)
        assert short.pid in found and other.pid not in found
        assert short.poll() is not None or _gone(short.pid, 0.1)
        assert time.monotonic() - started >= 0.3  # waited for it to finish its step
        stuck = subprocess.Popen(["sleep", "30"], env=env)
        assert process.wait_for_orphans(tag, timeout=0.2) == [stuck.pid]
        assert stuck.wait(timeout=5) == -signal.SIGKILL  # killed after the timeout
    finally:
        for p in (short, other):
            if p.poll() is None:
                p.kill()
            p.wait()


SPAWN_LOOP = """
import logging, sys
from evesnap_core import process
from evesnap_core.cli import interrupt
logging.basicConfig()
interrupt.install()
print("ready", flush=True)
try:
    while True:
        process.run(["true"])
except interrupt.Interrupted as stop:
    print(stop.line, file=sys.stderr)
    sys.exit(stop.exit_code)
"""


def test_an_interrupt_during_a_spawn_is_never_lost() -> None:
    """SIGINT at random moments while children are forked one after another: each
    is raised as Interrupted (exit 130), never swallowed in Python's at-fork hooks
    ("Exception ignored in: ... _releaseLock", and the command runs on)."""
    import random

    rng = random.Random(7)
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", SPAWN_LOOP],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(
                f"the interrupt was lost: still spawning 30 s later; stderr: {err}"
            ) from None
        assert proc.returncode == 130 and "Exception ignored" not in err, (proc.returncode, err)

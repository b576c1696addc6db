"""Hooks are real programs: argument lists (no shell), a timeout, stderr kept."""

from __future__ import annotations

import time
from pathlib import Path

from evesnap_core.policy.commands import run_command as run_hook


def script(tmp_path: Path, body: str, name: str = "hook.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_success_sees_its_arguments_and_environment(tmp_path: Path) -> None:
    hook = script(tmp_path, 'echo "$1|$2|$EVESNAP_APP"\n')
    result = run_hook([hook, "a b", "$HOME;rm"], 5, {"EVESNAP_APP": "shop"})
    assert result.ok and result.stdout == "a b|$HOME;rm|shop\n"  # no shell: nothing expanded


def test_failure_keeps_stderr(tmp_path: Path) -> None:
    hook = script(tmp_path, 'echo "database busy" >&2\nexit 3\n')
    result = run_hook([hook], 5)
    assert not result.ok and result.returncode == 3
    assert result.describe() == f"{hook!r} exited with 3: database busy"


def test_timeout_kills_the_hook_and_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    hook = script(tmp_path, f"(sleep 3; touch {marker}) &\necho waiting >&2\nsleep 30\n")
    started = time.monotonic()
    result = run_hook([hook], 0.5)
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.ok and "killed after its timeout" in result.describe()
    time.sleep(3.5)
    assert not marker.exists()


def test_a_missing_program_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    result = run_hook([str(tmp_path / "nope")], 5)
    assert not result.ok and result.start_error is not None
    assert "could not start" in result.describe()

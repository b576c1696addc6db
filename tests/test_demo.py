"""The main job (scripts/demo's walk-through) runs to its end on this machine:
a change that breaks it fails the tests, not the first user who tries it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.qemu
def test_the_walkthrough_runs_to_its_end() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "contrib" / "demo" / "walkthrough.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "RESTORED" in out.stdout and "walk-through finished" in out.stdout

"""What a command run directly (no agent to ask) does not import: the costs that
benchmarks/cold_start.py measures stay off the commands that do not need them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evesnap_core.handler_types import BackendContext
from evesnap_zfs import backend as zfs_backend
from evesnap_zfs import libzfs

HEAVY = ("http.client", "libzfs_core")
PROBE = (
    "import atexit, sys\n"
    "seen = lambda: ','.join(m for m in {heavy!r} if m in sys.modules)\n"
    "atexit.register(lambda: print('IMPORTED', seen(), file=sys.stderr))\n"
    "sys.argv = ['evesnap', *{argv!r}]\n"
    "from evesnap_launch import main\n"
    "main()\n"
)


def imported_by(argv: list[str], tmp_path: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVESNAP_")}
    env |= {"EVESNAP_PERSIST": str(tmp_path / "persist"), "EVESNAP_RUNTIME_DIR": str(tmp_path / "run")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, argv=argv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 3), done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("IMPORTED"))
    return [m for m in line.removeprefix("IMPORTED").strip().split(",") if m]


@pytest.mark.skipif(Path("/dev/zfs").exists(), reason="the zfs module is loaded here: pyzfs is then needed")
@pytest.mark.parametrize("argv", [["plugins"], ["status"]])
def test_a_direct_command_imports_no_http_client_nor_pyzfs(argv: list[str], tmp_path: Path) -> None:
    """No agent's socket: http.client is not needed; no zfs module: nor is libzfs_core
    (whether or not python3-pyzfs is installed), and the zfs backend still says why
    it is unavailable."""
    assert imported_by(argv, tmp_path) == []


def test_the_zfs_backend_says_why_without_importing_libzfs_core(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse() -> None:
        raise AssertionError("libzfs_core was imported")

    monkeypatch.setattr(zfs_backend, "load_libzfs_core", refuse)
    monkeypatch.setattr(libzfs.importlib.util, "find_spec", lambda name: None)
    absent = zfs_backend.ZfsBackend(BackendContext(persist_dir=tmp_path))
    assert absent.unavailable_reason.startswith("libzfs_core is not importable")
    assert "python3-pyzfs" in absent.unavailable_reason
    if Path("/dev/zfs").exists():
        return
    monkeypatch.setattr(libzfs.importlib.util, "find_spec", lambda name: object())
    no_module = zfs_backend.ZfsBackend(BackendContext(persist_dir=tmp_path))
    assert no_module.unavailable_reason == "the zfs kernel module is not loaded (/dev/zfs is missing)"

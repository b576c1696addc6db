"""One line, a documented exit code: a stop signal, an unusable folder, a config
that is not there yet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import EVESNAP, Cli


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only filesystem (root ignores mode bits, not a read-only mount)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVESNAP_")}
    env["EVESNAP_RUNTIME_DIR"] = str(tmp_path / "run")
    return env


@pytest.mark.parametrize("command", [["status"], ["apply", "/dev/null"], ["snapshot", "list", "x"]])
def test_a_read_only_persist_folder_is_one_line_exit_2(
    tmp_path: Path, read_only: Path, command: list[str]
) -> None:
    env = {**_env(tmp_path), "EVESNAP_PERSIST": str(read_only / "persist")}
    if command[0] == "apply":
        (tmp_path / "c.json").write_text('{"apps": []}')
        command = ["apply", str(tmp_path / "c.json")]
    out = subprocess.run([EVESNAP, *command], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Read-only file system" in out.stderr, out.stderr
    assert str(read_only / "persist") in out.stderr


def test_an_unwritable_home_is_one_line_exit_2(tmp_path: Path, read_only: Path) -> None:
    if os.geteuid() == 0:  # root's default persist folder is /var/lib/evesnap, not under HOME
        env = {**_env(tmp_path), "HOME": str(read_only), "XDG_DATA_HOME": str(read_only / "data")}
        # as user nobody, who may still READ anything (the checkout can be under /root,
        # mode 0700, as on a fresh machine) but writes only where nobody may
        reads_all = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *reads_all, EVESNAP, "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    else:
        env = {**_env(tmp_path), "HOME": str(read_only)}
        out = subprocess.run([EVESNAP, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "evesnap: error:" in out.stderr, out.stderr


def test_the_agent_waits_for_a_missing_config_saying_so_once(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    config, reports = tmp_path / "later.json", tmp_path / "reports.json"
    agent = subprocess.Popen(
        [EVESNAP, "agent", "--config", str(config), "--reports", str(reports), "--interval", "0.1"],
        env=cli.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stderr is not None
        first = agent.stderr.readline()  # said as soon as the agent looks
        while first.startswith("evesnap agent: API on"):
            first = agent.stderr.readline()
        assert first.startswith(f"evesnap agent: waiting for {config}"), first
        time.sleep(2.0)  # twenty more intervals without the file: said only once
        assert agent.poll() is None
        config.write_text(json.dumps({"apps": []}))
        deadline = time.monotonic() + 60
        while not reports.exists():
            assert time.monotonic() < deadline, "the agent never applied the config once it appeared"
            time.sleep(0.1)
        agent.send_signal(signal.SIGINT)
        assert agent.wait(timeout=60) == 130
        err = agent.stderr.read()
        lines = err.strip().splitlines()
        assert not [line for line in lines if "waiting for" in line], err
        assert lines[-1] == "evesnap agent: stopped by SIGINT" and "Traceback" not in err, err
    finally:
        if agent.poll() is None:
            agent.kill()
        subprocess.run(["rm", "-rf", str(cli.run_dir)], check=False)

"""One exit-code rule across every command (evesnap_core.cli.exit_codes,
docs/operator-guide.md), checked command by command through the real `evesnap`
on real qcow2 volumes and a real QEMU app: 0 done, 1 failed or a report holds
an error, 2 invalid input (changed nothing), 4 the persist folder is held,
130 Ctrl-C, 143 SIGTERM; every failure is one line on stderr."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from evesnap_core.cli.main import cli as evesnap_group
from evesnap_core.discovery import load_backends

from ..support import EVESNAP, Cli

pytestmark = pytest.mark.qemu


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    try:
        assert made("apply", str(made.config())).returncode == 0
        yield made
    finally:
        made.cleanup()


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {out.stderr!r}"
    assert lines[0].startswith("evesnap: "), lines[0]
    return lines[0]


def test_unknown_names_exit_2_for_every_command(device: Cli) -> None:
    """A snapshot, app or clone evesnap does not know is invalid input, whatever the command."""
    nosuch = str(uuid.uuid4())
    cases = [
        ("status", "nosuchapp"),
        ("snapshot", "create", "nosuchapp"),
        ("snapshot", "create", "shop", "--id", "not-a-uuid"),
        ("snapshot", "list", "nosuchapp"),
        ("snapshot", "describe", "shop", nosuch),
        ("snapshot", "rename", "shop", nosuch, "x"),
        ("snapshot", "rollback", "shop", nosuch),
        ("snapshot", "delete", "shop", nosuch),
        ("snapshot", "open", "shop", nosuch),
        ("snapshot", "close", "shop", nosuch),
        ("clone", "app", "shop", nosuch, "--name", "c"),
        ("clone", "volumes", "shop", nosuch),
        ("clone", "delete", nosuch),
        ("clone", "delete", "not-a-uuid"),
        ("apply", str(device.root / "missing.json")),
        ("policy", "check", str(device.root / "missing-policy.json")),
        ("snapshot", "rollback", "shop"),  # a missing argument (click's usage error)
        ("no-such-command",),
    ]
    for argv in cases:
        out = device(*argv)
        assert out.returncode == 2, f"{argv}: exit {out.returncode}: {out.stderr}"
        if argv[0] != "no-such-command" and argv[-1] != "shop":
            one_line_error(out)
    # nothing was changed by any of them
    assert [a["state"] for a in device.status()["apps"]] == ["RUNNING"]


def test_success_exits_0(device: Cli) -> None:
    made = device("snapshot", "create", "shop", "--json")
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["snapshot"]
    for argv in (
        ("status",),
        ("status", "shop", "--json"),
        ("snapshot", "list", "shop"),
        ("snapshot", "describe", "shop", sid),
        ("snapshot", "rename", "shop", sid, "before"),
        ("snapshot", "rollback", "shop", sid),
        ("snapshot", "delete", "shop", sid),
        ("plugins",),
    ):
        out = device(*argv)
        assert out.returncode == 0, f"{argv}: exit {out.returncode}: {out.stderr}"


def test_a_volume_error_alone_exits_1(device: Cli) -> None:
    """A content tree whose image is missing: the volume reports volumeErr and no
    app uses it, so only the volume holds the error; still exit 1."""
    data = device.config_data()
    broken = str(uuid.uuid4())
    tree = str(uuid.uuid4())
    data["volumes"].append(
        {"uuid": broken, "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": tree}}
    )
    data["contentInfo"] = [{"uuid": tree, "URL": "no-such-image.qcow2", "iformat": "QCOW2"}]
    config = device.root / "volume-error.json"
    config.write_text(json.dumps(data))
    out = device("apply", str(config), "--json")
    assert out.returncode == 1, out.stderr
    status = device.status()
    assert [v["uuid"] for v in status["volumes"] if v.get("volumeErr")] == [broken]
    assert not any(a.get("appErr") for a in status["apps"])


def test_invalid_config_exits_2_and_a_held_persist_folder_exits_4(device: Cli) -> None:
    bad = device.root / "bad.json"
    bad.write_text('{"apps": [{"activate": "yes"}]}')
    assert device("apply", str(bad)).returncode == 2
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from evesnap_core.state.lock import writer_lock;"
            "writer_lock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
            device.env["EVESNAP_PERSIST"],
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for argv in (("apply", str(device.config())), ("snapshot", "create", "shop")):
            out = device(*argv)
            assert out.returncode == 4, f"{argv}: exit {out.returncode}: {out.stderr}"
            assert "is locked by process" in one_line_error(out)
        assert device("status").returncode == 0  # a read-only view works beside the holder
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_signal_is_one_line_and_its_exit_code(device: Cli, signum: int, code: int, word: str) -> None:
    """`apply /dev/stdin` waits for its config on a pipe: a signal there ends it with
    one line and the signal's code, never a traceback or click's 'Aborted!'."""
    proc = subprocess.Popen(
        [EVESNAP, "apply", "/dev/stdin"],
        env=device.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # past start-up: blocked reading the config
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"evesnap: interrupted by {word}"), err
    assert [a["state"] for a in device.status()["apps"]] == ["RUNNING"]  # nothing changed


def test_every_option_has_help_text() -> None:
    """Each option of each command says what it does (shell completion shows it too)."""
    missing: list[str] = []

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and not param.help and "--help" not in param.opts:
                missing.append(f"{path} {'/'.join(param.opts)}")
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, f"{path} {name}")

    walk(evesnap_group, "evesnap")
    assert missing == [], f"options without help text: {missing}"


def test_shell_completion_as_documented(tmp_path: Path) -> None:
    """docs/operator-guide.md's completion line works: commands complete."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COMP_WORDS": "evesnap snap", "COMP_CWORD": "1"}
    out = subprocess.run(
        [EVESNAP],
        env={**env, "_EVESNAP_COMPLETE": "bash_complete"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "plain,snapshot" in out.stdout.split(), out
    script = subprocess.run(
        [EVESNAP], env={**env, "_EVESNAP_COMPLETE": "bash_source"}, capture_output=True, text=True, timeout=60
    )
    assert "complete -o nosort -F _evesnap_completion evesnap" in script.stdout

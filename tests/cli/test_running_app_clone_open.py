"""Clones and read-only opens of a RUNNING app's snapshots, end to end through
the real `evesnap` command with a real QEMU app holding its qcow2 volumes
(issue #20, item 4): the runtime's live attachment reaches the backend, so the
backend reads the snapshot beside the VM instead of refusing the locked image;
and an open snapshot never keeps the app from starting again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.testing.conformance.harness import qemu_io_read

from ..support import APP, MIB, VOL, Cli

pytestmark = pytest.mark.qemu


def ok(cli: Cli, *args: str) -> str:
    out = cli(*args)
    assert out.returncode == 0, f"evesnap {' '.join(args)} exited {out.returncode}: {out.stderr}"
    return out.stdout


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Cli, str]]:
    """An app running in QEMU whose volume held byte 7 at snapshot S and holds 9 now."""
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    cli = Cli(tmp_path)
    try:
        ok(cli, "apply", str(cli.config()))
        assert cli.status()["apps"][0]["state"] == "RUNNING"
        cli.guest_write(7)
        snapshot = ok(cli, "snapshot", "create", APP).strip()
        cli.guest_write(9)
        yield cli, snapshot
    finally:
        cli.cleanup()


def test_a_running_apps_snapshot_opens_and_the_app_restarts_while_it_is_open(
    running: tuple[Cli, str],
) -> None:
    cli, snapshot = running
    exports = json.loads(ok(cli, "snapshot", "open", APP, snapshot, "--json"))
    uri = exports[0]["uri"]
    assert qemu_io_read(uri, "raw", 0, MIB) == b"\x07" * MIB, (
        "the export shows the snapshot, not the VM's bytes"
    )
    # the app stops and starts again while the export stays open: the export takes no lock the VM needs
    ok(cli, "apply", str(cli.config(activate=False)))
    assert cli.status()["apps"][0]["state"] != "RUNNING"
    ok(cli, "apply", str(cli.config()))
    assert cli.status()["apps"][0]["state"] == "RUNNING", "the open snapshot kept the app from starting"
    cli.guest_write(11)  # the restarted VM writes its volume
    assert qemu_io_read(uri, "raw", 0, MIB) == b"\x07" * MIB
    assert cli.data() == bytes([11]) * MIB
    ok(cli, "snapshot", "close", APP, snapshot)
    assert not Path(exports[0]["path"]).exists()


def test_a_running_apps_snapshot_clones_into_volumes_and_an_app(running: tuple[Cli, str]) -> None:
    cli, snapshot = running
    made = json.loads(ok(cli, "clone", "volumes", APP, snapshot, "--json"))
    assert [m["from"].rsplit("/", 1)[1] for m in made] == [f"{VOL}#0"]
    assert qemu_io_read(made[0]["location"], "qcow2", 0, MIB) == b"\x07" * MIB
    clone = json.loads(ok(cli, "clone", "app", APP, snapshot, "--name", "copy", "--json"))
    apps = {a["AppID"]: a for a in cli.status()["apps"]}
    assert apps[APP]["state"] == "RUNNING", "cloning stopped the source app"
    assert apps[clone["app"]]["state"] == "RUNNING", "the cloned app did not start"
    assert qemu_io_read(clone["volumes"][0], "qcow2", 0, MIB) == b"\x07" * MIB
    assert cli.data() == b"\x09" * MIB, "the running app's own bytes changed"
    ok(cli, "clone", "delete", clone["app"])  # the device's own: no controller config removes it
    assert clone["app"] not in {a["AppID"] for a in cli.status()["apps"]}

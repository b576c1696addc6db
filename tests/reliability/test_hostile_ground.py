"""Hostile ground (issue 23): a full disk, a damaged state file or a planted
symlink never takes down another app, nor makes evesnap write outside its folder.

Every case runs the real `evesnap` command on real qcow2 volumes (embedded
runtime, so that no QEMU is needed for state handling) with two or more apps;
the damage is done to one app's state only, and the other app must still
reconcile (a new snapshot taken) and report. Figures are in
docs/reliability.md ("Hostile ground").

``.venv/bin/pytest -q tests/reliability/test_hostile_ground.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends

from ..support import EVESNAP, MIB, Cli

APP_A = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
APP_B = "7ba7b810-9dad-41d1-80b4-00c04fd430c8"
VOL_A = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
VOL_B = "7ba7b814-9dad-41d1-80b4-00c04fd430c8"
SNAP_A, SNAP_B = "1a7b8100-9dad-41d1-80b4-00c04fd430c8", "1b7b8100-9dad-41d1-80b4-00c04fd430c8"
SNAP_A2, SNAP_B2 = "2a7b8100-9dad-41d1-80b4-00c04fd430c8", "2b7b8100-9dad-41d1-80b4-00c04fd430c8"
TIMEOUT = 60


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path / "probe").backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    made.env["EVESNAP_RUNTIME"] = "embedded"
    try:
        yield made
    finally:
        subprocess.run(["rm", "-rf", str(made.run_dir)], check=False)


def two_apps(snaps_a: list[str], snaps_b: list[str]) -> dict[str, Any]:
    def app(uuid_: str, vol: str, name: str, snaps: list[str]) -> dict[str, Any]:
        return {
            "uuidandversion": {"uuid": uuid_, "version": "1"},
            "displayname": name,
            "activate": True,
            "volumeRefList": [{"uuid": vol}],
            "snapshot": {"maxSnapshots": 5, "snapshots": [{"id": s, "type": 2} for s in snaps]},
        }

    return {
        "apps": [app(APP_A, VOL_A, "victim", snaps_a), app(APP_B, VOL_B, "bystander", snaps_b)],
        "volumes": [
            {"uuid": v, "maxsizebytes": str(MIB), "origin": {"type": "VCOT_BLANK"}} for v in (VOL_A, VOL_B)
        ],
    }


def run(cli: Cli, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, with a deadline: a FIFO must never hang it."""
    return subprocess.run(
        [EVESNAP, *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        input=stdin,
    )


def apply(cli: Cli, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = cli.root / f"config-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(data))
    return run(cli, "apply", "--json", str(path))


def reports(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    data = json.loads(out.stdout)
    return {a["AppID"]: a for a in data["apps"]}


def available(app: dict[str, Any]) -> set[str]:
    return {s["id"] for s in app.get("snapshots", []) if not s.get("snapErr")}


def errors(app: dict[str, Any]) -> str:
    texts = [e["description"] for e in app.get("appErr", [])]
    texts += [s["snapErr"]["description"] for s in app.get("snapshots", []) if s.get("snapErr")]
    return "\n".join(texts)


# ---------------------------------------------------------------- damaged state, one app


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path, 0o600)


def _link_dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _huge(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(2 << 30)  # 2 GiB, sparse


def _deep(path: Path) -> None:
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)


def _deep_object(path: Path) -> None:
    path.write_bytes(b'{"SchemaVersion": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def _file_for_folder(path: Path) -> None:
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.write_text("not a folder\n")


def _dir_for_file(path: Path) -> None:
    path.unlink()
    path.mkdir()


def app_file(persist: Path) -> Path:
    return persist / "evesnap" / "apps" / f"{APP_A}.json"


def snapshot_file(persist: Path) -> Path:
    return persist / "snapshots" / SNAP_A / "snapshotInstanceStatus.json"


def snapshot_folder(persist: Path) -> Path:
    return persist / "snapshots" / SNAP_A


DAMAGE: dict[str, tuple[Callable[[Path], Path], Callable[[Path], None]]] = {
    "fifo-for-snapshot-status": (snapshot_file, _fifo),
    "fifo-for-app-state": (app_file, _fifo),
    "dev-zero-link-for-app-state": (app_file, _link_dev_zero),
    "dev-zero-link-for-snapshot-status": (snapshot_file, _link_dev_zero),
    "2-GiB-sparse-app-state": (app_file, _huge),
    "2-GiB-sparse-snapshot-status": (snapshot_file, _huge),
    "file-for-snapshot-folder": (snapshot_folder, _file_for_folder),
    "100000-deep-snapshot-status": (snapshot_file, _deep),
    "100000-deep-inside-an-object": (snapshot_file, _deep_object),
    "folder-for-app-state": (app_file, _dir_for_file),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_state_affects_only_its_own_app(cli: Cli, kind: str) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    persist = cli.root / "persist"
    where, damage = DAMAGE[kind]
    damage(where(persist))

    out = apply(cli, two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2]))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, (out.returncode, out.stderr)  # the damage is reported
    apps = reports(out)
    assert available(apps[APP_B]) == {SNAP_B, SNAP_B2}, apps[APP_B]  # the bystander reconciled
    assert errors(apps[APP_B]) == ""
    assert where(persist).name in errors(apps[APP_A]), apps[APP_A]  # reported on its own app
    # set aside: the next run is clean for the bystander, and still says what happened to the victim
    again = apply(cli, two_apps([SNAP_A, SNAP_A2], [SNAP_B, SNAP_B2]))
    assert "Traceback" not in again.stderr, again.stderr
    assert available(reports(again)[APP_B]) == {SNAP_B, SNAP_B2}
    status = run(cli, "status", "--json")
    assert status.returncode == 0, status.stderr


# ---------------------------------------------------------------- the lock file


def _lock_dir(path: Path) -> None:
    path.mkdir()


def _lock_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def _lock_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


LOCKS = {"directory": _lock_dir, "FIFO": _lock_fifo, "link to /dev/zero": _lock_dev_zero}


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_an_odd_lock_file_is_refused_in_one_line(cli: Cli, kind: str) -> None:
    first = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert first.returncode == 0, first.stderr
    lock = cli.root / "persist" / "evesnap.lock"
    lock.unlink()
    LOCKS[kind](lock)
    for args in (["snapshot", "create", APP_B], ["snapshot", "delete", APP_B, SNAP_B, "--force"]):
        out = run(cli, *args)
        assert out.returncode == 2, (args, out.returncode, out.stderr)
        assert out.stderr.count("\n") == 1 and "evesnap.lock" in out.stderr and "not a regular" in out.stderr
    out = apply(cli, two_apps([SNAP_A], [SNAP_B]))
    assert out.returncode == 2 and "evesnap.lock" in out.stderr and "Traceback" not in out.stderr
    assert run(cli, "status").returncode == 0  # a read takes no lock
    assert run(cli, "snapshot", "list", APP_B).returncode == 0


def test_a_lock_file_linked_to_a_file_outside_leaves_it_unchanged(cli: Cli) -> None:
    outside = cli.root / "precious.txt"
    outside.write_text("root-only content\n")
    persist = cli.root / "persist"
    persist.mkdir(mode=0o700)
    (persist / "evesnap.lock").symlink_to(outside)
    out = apply(cli, two_apps([], []))
    assert out.returncode == 2 and "evesnap.lock" in out.stderr, out.stderr
    assert outside.read_text() == "root-only content\n"

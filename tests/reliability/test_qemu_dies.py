"""A QEMU that dies mid-operation. Two apps, each a real qemu-system process
(TCG) holding a qcow2 volume; one app's QEMU is SIGKILLed at an exact point of
a live snapshot or a live deletion (``EVESNAP_KILL_AT=point=PID``: the
evesnap process kills it there and waits until it is gone), or while idle
before a snapshot. Then:

- the operation ends in a clear error on THAT app's snapshot (``snapErr``:
  "the VM of app ... is gone (its QEMU died or quit)"), the command exits 1
  naming the app;
- the other app keeps being served: its QEMU never restarted, its snapshot
  works;
- nothing half-done: the dead app's image table (``qemu-img snapshot -l``)
  and its sidecar hold exactly the snapshots evesnap lists as available;
- a later reconcile recovers: the app is started again and the operation
  carried out (offline).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.qemu import QmpClient
from evesnap_core.runtimes.qemu import guest_device
from evesnap_core.testing.conformance.harness import qemu_io_read

from ..support import APP, EVESNAP, MIB, VOL, Cli

pytestmark = pytest.mark.qemu

OTHER = "6ba7b820-9dad-41d1-80b4-00c04fd430c8"
OTHER_VOL = "6ba7b824-9dad-41d1-80b4-00c04fd430c8"
GONE = "is gone (its QEMU died or quit)"


class Pair(Cli):
    """Two apps, `APP` (whose QEMU dies) and `OTHER`, one qcow2 volume each."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, volumes=(VOL,))

    def config_data(  # type: ignore[override]
        self, snapshots: dict[str, list[str]] | None = None, activate: bool = True
    ) -> dict[str, Any]:
        def app(uuid_: str, volume: str, name: str) -> dict[str, Any]:
            return {
                "uuidandversion": {"uuid": uuid_, "version": "1"},
                "displayname": name,
                "activate": activate,
                "volumeRefList": [{"uuid": volume}],
                "snapshot": {
                    "maxSnapshots": 5,
                    "snapshots": [{"id": s, "type": 2} for s in (snapshots or {}).get(uuid_, [])],
                    "rollbackCmd": {"counter": 0},
                },
            }

        return {
            "apps": [app(APP, VOL, "dies"), app(OTHER, OTHER_VOL, "serves")],
            "volumes": [
                {"uuid": v, "maxsizebytes": str(8 * MIB), "origin": {"type": "VCOT_BLANK"}}
                for v in (VOL, OTHER_VOL)
            ],
        }

    def run(self, args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if kill_at:
            env["EVESNAP_KILL_AT"] = f"{kill_at}={self.pid(APP)}"
        return subprocess.run(
            [EVESNAP, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    def apply_json(self, **kwargs: Any) -> dict[str, dict[str, Any]]:
        out = self.run(["apply", str(self.config(**kwargs)), "--json"])
        assert out.returncode in (0, 1), out.stderr
        return {a["AppID"]: a for a in json.loads(out.stdout)["apps"]}

    def apps(self) -> dict[str, dict[str, Any]]:
        return {a["AppID"]: a for a in self.status()["apps"]}

    def pid(self, app: str) -> int:
        return int((self.root / "persist" / "run" / "apps" / app / "qemu.pid").read_text())

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            return bool(Path(f"/proc/{pid}/cmdline").read_bytes())  # a zombie has none
        except OSError:
            return False

    def write(self, app: str, value: int) -> None:
        with QmpClient(next(self.run_dir.glob(f"*-{app}.qmp"))) as qmp:
            qmp.hmp(f'qemu-io -d {guest_device(0)} "write -P {value} 0 1M"')
            qmp.hmp(f'qemu-io -d {guest_device(0)} "flush"')

    def image(self, volume: str) -> Path:
        return self.root / "persist" / "vault" / "volumes" / f"{volume}#0.qcow2"

    def tags(self, volume: str) -> set[str]:
        """The image's own table (qemu-img), which its sidecar must match."""
        from evesnap_qcow2 import sidecar

        out = subprocess.run(
            ["qemu-img", "snapshot", "-U", "-l", str(self.image(volume))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        table = {w.split("-snapshot-")[1] for w in out.split() if "-snapshot-" in w}
        noted = {r.snapshot_id for r in sidecar.load(self.image(volume)).tags.values()}
        assert noted == table, f"sidecar {noted}, image {table}"
        return table

    def available(self, app: str) -> set[str]:
        out = self("snapshot", "list", app, "--json")
        assert out.returncode == 0, out.stderr
        return {s["id"] for s in json.loads(out.stdout) if s["state"] == "available"}

    def kill_vms(self) -> None:
        for pidfile in (self.root / "persist" / "run" / "apps").glob("*/qemu.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(self.run_dir)], check=False)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Pair(tmp_path)
    try:
        reports = made.apply_json()
        assert all(a["state"] == "RUNNING" for a in reports.values()), reports
        made.write(APP, 0xA1)
        made.write(OTHER, 0xB1)
        yield made
    finally:
        made.kill_vms()


def snap_error(app: dict[str, Any], sid: str) -> str:
    snap = next(s for s in app.get("snapshots", []) if s["id"] == sid)
    return str((snap.get("snapErr") or {}).get("description", ""))


def other_still_served(pair: Pair, other_pid: int) -> None:
    """The other app's QEMU never stopped, and it still takes a live snapshot."""
    sid = str(uuid.uuid4())
    out = pair.run(["snapshot", "create", OTHER, "--id", sid])
    assert out.returncode == 0, out.stderr
    assert pair.pid(OTHER) == other_pid and pair.alive(other_pid)
    assert sid in pair.available(OTHER) and sid in pair.tags(OTHER_VOL)


def recovered(pair: Pair, other_pid: int) -> dict[str, dict[str, Any]]:
    """A later reconcile starts the app again; the other app is left as it was."""
    apps = pair.apply_json()
    assert apps[APP]["state"] == "RUNNING" and pair.alive(pair.pid(APP)), apps[APP]
    assert all("died" in e["description"] for e in apps[APP]["appErr"]), apps[
        APP
    ]  # said once, then restarted
    assert not apps[OTHER]["appErr"]
    assert pair.pid(OTHER) == other_pid
    assert qemu_io_read(str(pair.image(VOL)), "qcow2", 0, MIB) == bytes([0xA1]) * MIB
    assert qemu_io_read(str(pair.image(OTHER_VOL)), "qcow2", 0, MIB) == bytes([0xB1]) * MIB
    return apps


@pytest.mark.parametrize("point", ["qcow2.live.transaction", "qcow2.live.connect"])
def test_qemu_dies_during_live_snapshot(pair: Pair, point: str) -> None:
    dead, other_pid = pair.pid(APP), pair.pid(OTHER)
    sid = str(uuid.uuid4())
    out = pair.run(["snapshot", "create", APP, "--id", sid], kill_at=point)
    assert not pair.alive(dead)
    assert out.returncode == 1, out.stderr
    assert APP in out.stderr and GONE in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    apps = pair.apps()
    assert GONE in snap_error(apps[APP], sid) and f"app {APP}" in snap_error(apps[APP], sid)
    assert apps[APP]["state"] == "HALTED"
    assert apps[OTHER]["state"] == "RUNNING" and not apps[OTHER]["appErr"]
    assert all(not s.get("snapErr") for s in apps[OTHER].get("snapshots", []))
    assert pair.tags(VOL) == set() and pair.available(APP) == set()  # nothing half-done
    other_still_served(pair, other_pid)
    recovered(pair, other_pid)
    # the request outlived the failure: the reconcile took it (offline), once
    assert pair.available(APP) == {sid} and pair.tags(VOL) == {sid}


def test_qemu_dies_while_idle_before_a_snapshot(pair: Pair) -> None:
    """Killed well before: evesnap finds the app stopped, takes the snapshot
    offline (what the disk held when QEMU died, as after a power cut) and
    starts the app again."""
    dead, other_pid = pair.pid(APP), pair.pid(OTHER)
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pair.alive(dead) and time.monotonic() < deadline:
        time.sleep(0.01)
    sid = str(uuid.uuid4())
    out = pair.run(["snapshot", "create", APP, "--id", sid])
    assert out.returncode == 0, out.stderr
    assert pair.available(APP) == {sid} and pair.tags(VOL) == {sid}
    apps = pair.apps()
    assert apps[APP]["state"] == "RUNNING" and pair.pid(APP) != dead and pair.alive(pair.pid(APP))
    assert qemu_io_read(str(pair.image(VOL)), "qcow2", 0, MIB) == bytes([0xA1]) * MIB
    other_still_served(pair, other_pid)


def test_qemu_death_while_idle_is_reported_on_the_app(pair: Pair) -> None:
    os.kill(pair.pid(APP), signal.SIGKILL)
    time.sleep(0.2)
    apps = pair.apply_json()
    assert any("died" in e["description"] for e in apps[APP]["appErr"]), apps[APP]


@pytest.mark.slow
def test_qemu_dies_during_live_delete(pair: Pair) -> None:
    sid = str(uuid.uuid4())
    assert pair.run(["snapshot", "create", APP, "--id", sid]).returncode == 0
    other_pid = pair.pid(OTHER)
    out = pair.run(["snapshot", "delete", APP, sid], kill_at="qcow2.live.delete")
    assert out.returncode == 1 and GONE in out.stderr, out.stderr
    apps = pair.apps()
    assert GONE in snap_error(apps[APP], sid) and apps[APP]["state"] == "HALTED"
    assert pair.tags(VOL) == {sid}  # still there and still listed: nothing half-done
    assert any(s["id"] == sid for s in apps[APP]["snapshots"])
    other_still_served(pair, other_pid)
    recovered(pair, other_pid)
    assert pair.available(APP) == set() and pair.tags(VOL) == set()  # the deletion was retried


def test_agent_keeps_serving_the_other_app(pair: Pair) -> None:
    """The agent: both apps' snapshots in one config; one QEMU dies in its
    transaction. The other app's snapshot is taken in the same pass, the agent
    stays up, and the next config change recovers the dead app."""
    other_pid = pair.pid(OTHER)
    config, reports = pair.root / "device.json", pair.root / "reports.json"
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    config.write_text(json.dumps(pair.config_data(snapshots={APP: [a], OTHER: [b]})))
    env = dict(pair.env, EVESNAP_KILL_AT=f"qcow2.live.transaction={pair.pid(APP)}")
    pair.agent = subprocess.Popen(
        [EVESNAP, "agent", "--config", str(config), "--reports", str(reports), "--interval", "0.2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )

    def by_app(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {x["AppID"]: x for x in data["apps"]}

    first = by_app(pair.wait_reports(reports, lambda r: snap_error(by_app(r)[APP], a) != ""))
    assert GONE in snap_error(first[APP], a)
    assert [s["id"] for s in first[OTHER]["snapshots"]] == [b] and not snap_error(first[OTHER], b)
    assert first[OTHER]["state"] == "RUNNING" and pair.pid(OTHER) == other_pid
    assert pair.tags(VOL) == set() and pair.tags(OTHER_VOL) == {b}
    # a config change (here: the same content rewritten) makes the agent reconcile again
    reports.unlink()
    config.write_text(json.dumps(pair.config_data(snapshots={APP: [a], OTHER: [b]})) + "\n")
    second = by_app(
        pair.wait_reports(
            reports, lambda r: by_app(r)[APP]["state"] == "RUNNING" and not snap_error(by_app(r)[APP], a)
        )
    )
    assert pair.agent.poll() is None
    assert pair.stop_agent() == 143  # SIGTERM: one line, exit 128+15
    assert [s["id"] for s in second[APP]["snapshots"]] == [a] and pair.tags(VOL) == {a}
    assert pair.pid(OTHER) == other_pid


def test_the_agent_brings_back_a_dead_vm_without_a_new_config(pair: Pair) -> None:
    """--resync: the same config reconciled again finds the VM dead, says so, restarts it."""
    config, reports = pair.root / "device.json", pair.root / "reports.json"
    config.write_text(json.dumps(pair.config_data(snapshots={APP: [], OTHER: []})))
    pair.start_agent(config, reports, extra=("--resync", "1"))
    pair.wait_reports(reports, lambda r: len(r["apps"]) == 2)
    dead = pair.pid(APP)
    os.kill(dead, signal.SIGKILL)
    back = pair.wait_reports(
        reports,
        lambda r: any(
            a["AppID"] == APP and any("died" in e["description"] for e in a.get("appErr", []))
            for a in r["apps"]
        ),
    )
    app = next(a for a in back["apps"] if a["AppID"] == APP)
    assert app["state"] == "RUNNING" and pair.pid(APP) != dead and pair.alive(pair.pid(APP))
    assert pair.stop_agent() == 143  # SIGTERM: one line, exit 128+15

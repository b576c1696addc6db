"""Quiesced live snapshots of a real guest, through the real `evesnap` command.

The app's VM boots Debian's kernel under TCG (contrib/guestvm, through the QEMU
runtime's EVESNAP_QEMU_GUEST setting) with an ext4 file system on its qcow2
volume and qemu-ga on its virtio-serial port; the host drives the guest through
the agent. One boot serves the tests of this module, in order; the rollback
boots it again. Marked `guestvm` (and slow): scripts/test runs them after the
VM set-up, `pytest -m guestvm tests/guestvm` by hand.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.orchestrator.quiesce import PROBE_TIMEOUT
from evesnap_core.qemu.guest_agent import GuestAgent
from evesnap_core.testing.guest import guest_exec, sh, wait_ready

from ..support import APP, EVESNAP, MIB, Cli

pytestmark = [pytest.mark.guestvm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GUESTVM = ROOT / "contrib" / "guestvm" / "guestvm"
BOUND = 5.0
"""The freeze bound these tests set (EVESNAP_FREEZE_TIMEOUT)."""
WRITER = (
    "mkdir -p /run/data/w; i=0; while :; do "
    'echo "$i" > /run/data/w/f$((i % 40)).tmp && mv /run/data/w/f$((i % 40)).tmp /run/data/w/f$((i % 40)); '
    "dd if=/dev/urandom of=/run/data/w/big bs=64k count=4 seek=$((i % 64)) conv=notrunc 2>/dev/null; "
    "i=$((i + 1)); done"
)


class Guest:
    def __init__(self, cli: Cli) -> None:
        self.cli = cli

    @property
    def sock(self) -> Path:
        return next((self.cli.run_dir / "own").glob(f"*-{APP}.qga"))

    @property
    def console(self) -> Path:
        return self.cli.root / "persist" / "run" / "apps" / APP / "console.log"

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(
            [EVESNAP, *args],
            env=env or self.cli.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, f"evesnap {' '.join(args)}: {out.stderr}"
        return out.stdout

    def describe(self, sid: str) -> dict[str, Any]:
        return dict(json.loads(self.ok("snapshot", "describe", APP, sid)))

    def status(self) -> str:
        with GuestAgent(self.sock, timeout=5) as agent:
            return agent.freeze_status()

    def snapshot_image(self, sid: str, out: Path) -> Path:
        """The snapshot's volume as a raw image, read beside the running VM."""
        info = self.describe(sid)
        part = next(iter(info["volumes"].values()))
        tag, location = part["info"]["name"], part["handle"]["location"]
        subprocess.run(
            ["qemu-img", "convert", "-U", "-l", f"snapshot.name={tag}", "-O", "raw", location, str(out)],
            check=True,
            timeout=120,
            capture_output=True,
        )
        return out


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    if subprocess.run([str(GUESTVM), "check"], capture_output=True, check=False).returncode != 0:
        pytest.skip("the guest VM harness is not set up: contrib/guestvm/guestvm setup")
    root = tmp_path_factory.mktemp("guestvm")
    setting = subprocess.run(
        [str(GUESTVM), "setting", str(root)], capture_output=True, text=True, check=True, timeout=300
    ).stdout.strip()
    cli = Cli(root)
    cli.env.update(EVESNAP_QEMU_GUEST=setting, EVESNAP_FREEZE_TIMEOUT=str(BOUND))
    data = cli.config_data()
    data["volumes"][0]["maxsizebytes"] = str(64 * MIB)
    config = root / "config.json"
    config.write_text(json.dumps(data))
    try:
        made = Guest(cli)
        made.ok("apply", str(config))
        wait_ready(made.console)
        assert sh(made.sock, "mountpoint -q /run/data").code == 0, made.console.read_text()
        yield made
    finally:
        cli.cleanup()


def test_a_quiesced_snapshot_of_a_writing_guest_is_clean_and_briefly_frozen(
    guest: Guest, tmp_path: Path
) -> None:
    writer = guest_exec(guest.sock, ["/bin/sh", "-c", WRITER], wait=False)
    assert isinstance(writer, int)
    time.sleep(2)  # the workload is writing
    start = time.monotonic()
    sid = guest.ok("snapshot", "create", APP).strip()
    took = time.monotonic() - start
    info = guest.describe(sid)
    assert info["consistency"] == "filesystem-consistent", info["consistency_detail"]
    frozen_ms = int(re.search(r"frozen for (\d+) ms", info["consistency_detail"]).group(1))  # type: ignore[union-attr]
    assert frozen_ms < BOUND * 1000
    print(
        f"quiesced snapshot: command {took:.2f} s, guest frozen {frozen_ms} ms ({info['consistency_detail']})"
    )
    assert guest.status() == "thawed"
    assert sh(guest.sock, "ls /run/data/w | wc -l").out.strip() != "0"  # still writing after the thaw
    image = guest.snapshot_image(sid, tmp_path / "snap.raw")
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True, timeout=120)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr  # clean: no journal to replay, no error
    sh(guest.sock, f"kill {writer}")


def test_evesnap_killed_between_freeze_and_thaw_leaves_the_guest_thawed(guest: Guest) -> None:
    env = {**guest.cli.env, "EVESNAP_CRASH_AT": "freeze.frozen"}
    out = subprocess.run(
        [EVESNAP, "snapshot", "create", APP],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    killed = time.monotonic()
    assert out.returncode == -9, out.stderr
    while time.monotonic() - killed < BOUND:
        try:
            if guest.status() == "thawed":
                break
        except Exception:
            pass
        time.sleep(0.1)
    thawed_after = time.monotonic() - killed
    assert guest.status() == "thawed" and thawed_after < BOUND
    log = (guest.cli.run_dir / "thaw-watchdog.log").read_text()
    assert "evesnap went away before thawing" in log and "thawed the guest (1 filesystems)" in log
    print(f"evesnap SIGKILLed while frozen: guest thawed {thawed_after * 1000:.0f} ms later")
    # the next writer recovers (the freeze intent), then snapshots again
    sid = guest.ok("snapshot", "create", APP).strip()
    assert guest.describe(sid)["consistency"] == "filesystem-consistent"
    assert list((guest.cli.root / "persist" / "evesnap" / "journal").iterdir()) == []


def test_a_hung_guest_agent_does_not_block_the_snapshot(guest: Guest) -> None:
    """qemu-ga stopped (SIGSTOP) in the guest: the snapshot goes on, crash-consistent, within the probe."""
    guest_exec(
        guest.sock,
        [
            "/bin/sh",
            "-c",
            "sleep 1; kill -STOP $(cat /run/qemu-ga.pid); sleep 25; kill -CONT $(cat /run/qemu-ga.pid)",
        ],
        wait=False,
    )
    time.sleep(2)
    start = time.monotonic()
    sid = guest.ok("snapshot", "create", APP).strip()
    took = time.monotonic() - start
    info = guest.describe(sid)
    assert info["consistency"] == "crash-consistent"
    assert "no guest agent answered" in info["consistency_detail"]
    assert took < PROBE_TIMEOUT + 8  # the probe, plus the command's own start and QMP work
    print(f"hung agent: snapshot in {took:.2f} s, {info['consistency_detail']}")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:  # wait for the agent to come back
        try:
            guest.status()
            break
        except Exception:
            time.sleep(0.5)


def test_rollback_to_a_quiesced_snapshot_boots_a_clean_filesystem(guest: Guest) -> None:
    sh(guest.sock, "mkdir -p /run/data/keep && echo before > /run/data/keep/mark")
    sid = guest.ok("snapshot", "create", APP).strip()
    assert guest.describe(sid)["consistency"] == "filesystem-consistent"
    writer = guest_exec(guest.sock, ["/bin/sh", "-c", WRITER], wait=False)
    time.sleep(1)
    sh(guest.sock, "echo after > /run/data/keep/mark; sync")
    assert isinstance(writer, int)
    guest.ok("snapshot", "rollback", APP, sid)
    text = wait_ready(guest.console)
    assert "boot fsck of /dev/vda: exit 0" in text, text
    assert "made ext4" not in text  # the same file system, not a new one
    assert sh(guest.sock, "cat /run/data/keep/mark").out.strip() == "before"

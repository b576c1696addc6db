"""The real `evesnap` command as a subprocess against real qcow2 volumes and a
real QEMU app (blank volumes here; purgeable ones are in tests/e2e)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ..support import APP, EVESNAP, MIB, VOL, Cli, controller_view, volume_rows

pytestmark = pytest.mark.qemu


def test_invalid_config_exits_2_naming_the_field_and_changes_nothing(cli: Cli) -> None:
    bad = cli.root / "bad.json"
    bad.write_text(json.dumps({"apps": [{"uuidandversion": {"uuid": "not-a-uuid"}}]}))
    out = cli("apply", str(bad))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "apps[0].uuidandversion.uuid" in out.stderr
    assert "fix the config file" in out.stderr
    assert not (cli.root / "persist" / "evesnap").exists() or cli.status()["apps"] == []


def test_apply_status_and_local_snapshots(cli: Cli) -> None:
    out = cli("apply", str(cli.config()))
    assert out.returncode == 0, out.stderr
    assert "RUNNING" in out.stdout and "shop" in out.stdout
    status = cli.status()
    volume = next(v for v in volume_rows(status) if v["uuid"] == VOL)
    assert volume["backend"] == "qcow2" and volume["location"].endswith(f"{VOL}#0.qcow2")
    assert int(volume["virtualSizeBytes"]) == 16 * MIB

    cli.guest_write(0xAB)
    made = cli("snapshot", "create", "shop", "--json")
    assert made.returncode == 0, made.stderr
    local_id = json.loads(made.stdout)["snapshot"]
    uuid.UUID(local_id)  # a device-generated UUID
    listed = json.loads(cli("snapshot", "list", "shop", "--json").stdout)
    assert [s["id"] for s in listed] == [local_id]
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    assert app["state"] == "RUNNING" and app["snapshots"][0]["id"] == local_id

    cli.guest_write(0xEE)  # damage
    rolled = cli("snapshot", "rollback", "shop", local_id)
    assert rolled.returncode == 0, rolled.stderr
    assert cli.data() == bytes([0xAB]) * MIB

    deleted = cli("snapshot", "delete", "shop", local_id)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout  # qcow2 deletes live
    assert json.loads(cli("snapshot", "list", "shop", "--json").stdout) == []


def test_unknown_app_and_snapshot_are_one_line_errors(cli: Cli) -> None:
    assert cli("apply", str(cli.config())).returncode == 0
    out = cli("snapshot", "list", "nosuchapp")
    assert out.returncode == 2 and "no app is named 'nosuchapp'" in out.stderr
    out = cli("snapshot", "rollback", "shop", str(uuid.uuid4()))
    assert out.returncode == 2 and "run 'evesnap snapshot list shop'" in out.stderr


def test_controller_snapshot_and_rollback_through_apply(cli: Cli) -> None:
    snap = str(uuid.uuid4())
    assert cli("apply", str(cli.config())).returncode == 0
    cli.guest_write(0x11)
    out = cli("apply", str(cli.config(snapshots=[snap])), "--json")
    reports = json.loads(out.stdout)
    assert [s["id"] for s in reports["apps"][0]["snapshots"]] == [snap]
    cli.guest_write(0x22)
    out = cli("apply", str(cli.config(snapshots=[snap], version="2", counter=1, active=snap)), "--json")
    assert json.loads(out.stdout)["apps"][0]["appVersion"] == "1"
    assert cli.data() == bytes([0x11]) * MIB


def test_agent_follows_the_config_and_stops_on_sigterm(cli: Cli) -> None:
    config = cli.root / "device.json"
    config.write_text(cli.config().read_text())
    reports = cli.root / "reports.json"
    agent = subprocess.Popen(
        [EVESNAP, "agent", "--config", str(config), "--reports", str(reports), "--interval", "0.2"],
        env=cli.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def wait(predicate: Any) -> dict[str, Any]:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    data = controller_view(json.loads(reports.read_text()))
                    if predicate(data):
                        return data
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            raise AssertionError(f"agent never reported; stderr: {agent.stderr}")

        wait(lambda d: d["apps"] and d["apps"][0]["state"] == "RUNNING")
        snap = str(uuid.uuid4())
        config.write_text(cli.config(snapshots=[snap]).read_text())
        wait(lambda d: [s["id"] for s in d["apps"][0]["snapshots"]] == [snap])
        config.write_text("{ not json")  # an invalid config is reported and ignored
        time.sleep(0.6)
        assert agent.poll() is None
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 143  # SIGTERM: the step finished, one line, 128+15
        assert "ignoring invalid" in (agent.stderr.read() if agent.stderr else "")
    finally:
        if agent.poll() is None:
            agent.kill()


def test_one_writer_per_persist_folder_and_status_beside_it(cli: Cli) -> None:
    config = cli.config()
    assert cli("apply", str(config)).returncode == 0
    holder = subprocess.Popen(
        [EVESNAP, "agent", "--config", str(config), "--interval", "0.2"],
        env=cli.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = cli.root / "persist" / "evesnap.lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(holder.pid)):
            assert time.monotonic() < deadline, "the agent never took the lock"
            time.sleep(0.05)
        direct = subprocess.run(
            [EVESNAP, "apply", str(config)],
            env={**cli.env, "EVESNAP_DIRECT": "1"},  # a second writer beside it, not its client
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert direct.returncode == 4 and f"locked by process {holder.pid}" in direct.stderr
        second = cli("apply", str(config))  # the CLI as the agent's client: queued, never "locked"
        assert second.returncode == 0 and "locked" not in second.stderr, second.stderr
        assert cli("status").returncode == 0  # reading beside the agent is fine
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=60)


def test_persist_folder_writable_by_others_is_refused(cli: Cli) -> None:
    persist = cli.root / "persist"
    persist.mkdir(mode=0o700, exist_ok=True)
    persist.chmod(0o777)
    out = cli("apply", str(cli.config()))
    assert out.returncode == 2 and "writable by group or others" in out.stderr and "chmod 700" in out.stderr
    persist.chmod(0o700)


def test_persist_flag_and_unknown_runtime(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    out = cli("--persist", str(other), "apply", str(cli.config()))
    assert out.returncode == 0, out.stderr
    assert (other / "evesnap").is_dir()  # the flag wins over EVESNAP_PERSIST
    assert cli("--persist", str(other), "apply", "/dev/stdin", stdin='{"apps": []}').returncode == 0
    out = cli("--runtime", "nosuch", "apply", str(cli.config()))
    assert out.returncode == 2 and "unknown runtime 'nosuch'" in out.stderr and "qemu" in out.stderr

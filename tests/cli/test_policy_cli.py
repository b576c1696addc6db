"""`evesnap policy` end to end: the real command as a subprocess, real qcow2 volumes
(internal snapshots checked with qemu-img), the embedded runtime (no VM), and a
fake clock stepped with --now."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends

from ..support import MIB, VOL, Cli

CTRL = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"

HOURLY = """
[default]
schedules = { hourly = "0 * * * *" }
[default.retention]
hourly = 3
daily = 2
"""


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    made.env["EVESNAP_RUNTIME"] = "embedded"
    try:
        out = made("apply", str(made.config(snapshots=[CTRL])))
        assert out.returncode == 0, out.stderr
        yield made
    finally:
        made.cleanup()


def write_policy(cli: Cli, text: str, name: str = "policy.toml") -> str:
    path = cli.root / name
    path.write_text(text)
    return str(path)


def run(cli: Cli, policy: str, now: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("policy", "run", policy, "--now", now, *extra)


def run_json(cli: Cli, policy: str, now: str, *extra: str) -> dict[str, Any]:
    out = run(cli, policy, now, "--json", *extra)
    assert out.returncode in (0, 1), out.stderr
    return dict(json.loads(out.stdout))


def listed(cli: Cli) -> dict[str, str]:
    """The app's snapshots: id -> createTime."""
    out = cli("snapshot", "list", "shop", "--json")
    assert out.returncode == 0, out.stderr
    return {s["id"]: s["createTime"] for s in json.loads(out.stdout)}


def qcow2_snapshots(cli: Cli) -> set[str]:
    """The snapshot ids inside the qcow2 file itself."""
    info = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", cli.location()],
        capture_output=True,
        text=True,
        check=True,
    )
    return {s["name"].rsplit("-snapshot-", 1)[1] for s in json.loads(info.stdout).get("snapshots", [])}


def guest_write(cli: Cli, value: int) -> None:
    """Write the volume's first MiB as the (stopped) app would."""
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {value} 0 1M", cli.location()],
        check=True,
        capture_output=True,
    )


def tree_digest(root: Path) -> str:
    """Names, sizes, mtimes and bytes of every file under `root` (the lock file aside)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "evesnap.lock"):
        st = path.stat()
        h.update(f"{path.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_a_stepped_clock_creates_schedule_snapshots_and_prunes_the_right_ones(cli: Cli) -> None:
    policy = write_policy(cli, HOURLY)
    created: dict[str, str] = {}
    for i in range(12):  # every 4 hours over two days
        day, hour = divmod(4 * i, 24)
        now = f"2026-12-0{1 + day}T{hour:02d}:05:00Z"
        guest_write(cli, i + 1)
        data = run_json(cli, policy, now)
        assert data["ok"], data
        (app,) = data["execution"]["apps"]
        created[app["created"]] = now
        for prune in data["plan"]["apps"][0]["prune"]:
            assert prune["rule"] == "hourly=3, daily=2"
            assert prune["reason"].startswith("not kept by hourly=3, daily=2: hourly=3: ")
            assert "daily=2: " in prune["reason"]
        assert all(p["result"] == "deleted" for p in app["prunes"])
    wanted = {
        sid
        for sid, now in created.items()
        if now.endswith(("01T20:05:00Z", "02T12:05:00Z", "02T16:05:00Z", "02T20:05:00Z"))
    }
    assert len(wanted) == 4
    snaps = listed(cli)
    assert set(snaps) == wanted | {CTRL}  # the controller's snapshot is never pruned
    assert qcow2_snapshots(cli) == wanted | {CTRL}  # and the qcow2 file agrees
    assert {snaps[s] for s in wanted} == {
        "2026-12-01T20:05:00Z",
        "2026-12-02T12:05:00Z",
        "2026-12-02T16:05:00Z",
        "2026-12-02T20:05:00Z",
    }  # the fake clock stamped them
    # the daily one kept from the first day holds the bytes of that time
    daily = next(s for s in wanted if created[s] == "2026-12-01T20:05:00Z")
    guest_write(cli, 0xEE)
    assert cli("snapshot", "rollback", "shop", daily).returncode == 0
    assert cli.data(VOL) == bytes([6]) * MIB


def test_dry_run_changes_nothing_and_lists_creations_and_prunes_with_reasons(cli: Cli) -> None:
    policy = write_policy(cli, HOURLY)
    for hour in range(3):
        assert run(cli, policy, f"2026-12-01T{hour:02d}:01:00Z").returncode == 0
    before = (listed(cli), qcow2_snapshots(cli), tree_digest(cli.root / "persist"))
    out = run(cli, policy, "2026-12-01T03:01:00Z", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "dry run: nothing was changed" in out.stdout
    assert "create   would take a snapshot: hourly (0 * * * *, due 2026-12-01T03:00:00+00:00)" in out.stdout
    prune_lines = [line for line in out.stdout.splitlines() if line.strip().startswith("prune")]
    assert (
        len(prune_lines) == 1 and "not kept by hourly=3, daily=2: hourly=3: 2026-12-01 00h" in prune_lines[0]
    )
    assert f"keep     {CTRL}" in out.stdout and "origin=controller" in out.stdout
    data = run_json(cli, policy, "2026-12-01T03:01:00Z", "--dry-run")
    assert data["dryRun"] and data["execution"] is None
    (app,) = data["plan"]["apps"]
    assert app["create"] and [f["schedule"] for f in app["fired"]] == ["hourly"]
    assert len(app["prune"]) == 1 and app["prune"][0]["snapshot"] in before[0]
    assert (listed(cli), qcow2_snapshots(cli), tree_digest(cli.root / "persist")) == before


def test_a_pre_hook_veto_takes_no_snapshot_and_reports_its_stderr(cli: Cli) -> None:
    hook = cli.root / "pre-hook"
    hook.write_text('#!/bin/sh\necho "shop: backup window closed for $EVESNAP_APP_NAME" >&2\nexit 7\n')
    hook.chmod(0o755)
    policy = write_policy(cli, HOURLY + f'[default.hooks]\npre = ["{hook}"]\ntimeout = 10\n')
    out = run(cli, policy, "2026-12-01T00:05:00Z")
    assert out.returncode == 1
    assert (
        f"vetoed   pre-hook vetoed the snapshot: '{hook}' exited with 7: shop: backup window closed for shop"
        in (out.stdout)
    )
    assert set(listed(cli)) == {CTRL} and qcow2_snapshots(cli) == {CTRL}
    data = run_json(cli, policy, "2026-12-01T00:06:00Z")
    assert not data["ok"] and data["execution"]["apps"][0]["vetoed"]
    assert data["execution"]["apps"][0]["pre_hook"]["returncode"] == 7


def test_below_the_free_space_floor_no_snapshot_is_taken(cli: Cli) -> None:
    policy = write_policy(
        cli, HOURLY.replace("[default.retention]", 'min_free = "100%"\n[default.retention]')
    )
    out = run(cli, policy, "2026-12-01T00:05:00Z")
    assert out.returncode == 1
    assert "refused  hourly (0 * * * *, due 2026-12-01T00:00:00+00:00): free space" in out.stdout
    assert "is below the floor min_free=100%" in out.stdout and "no snapshot taken" in out.stdout
    assert set(listed(cli)) == {CTRL} and qcow2_snapshots(cli) == {CTRL}
    roomy = write_policy(
        cli, HOURLY.replace("[default.retention]", "min_free = 1024\n[default.retention]"), "ok.toml"
    )
    assert run(cli, roomy, "2026-12-01T00:05:00Z").returncode == 0
    assert len(listed(cli)) == 2


def test_check_prints_schedules_and_refuses_a_bad_file_naming_the_field(cli: Cli) -> None:
    good = write_policy(cli, HOURLY + '[apps.shop]\nschedules = { often = "*/15 * * * *" }\n')
    out = cli("policy", "check", good, "--now", "2026-12-01T00:05:00Z")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert ["default", "hourly", "0", "*", "*", "*", "*", "2026-12-01T01:00:00+00:00"] in rows
    assert ["apps.shop", "often", "*/15", "*", "*", "*", "*", "2026-12-01T00:15:00+00:00"] in rows
    assert "retention: hourly=3, daily=2" in out.stdout
    hooked = write_policy(cli, HOURLY + '[default.hooks]\npre = ["/nonexistent/freeze"]\n', "hooked.toml")
    out = cli("policy", "check", hooked)
    assert (
        out.returncode == 0 and "default.hooks.pre: '/nonexistent/freeze' is not an executable" in out.stderr
    )
    bad = write_policy(cli, '[apps.shop]\nschedules = { h = "0 25 * * *" }\n', "bad.toml")
    out = cli("policy", "check", bad)
    assert out.returncode == 2
    assert f"{bad}: apps.shop.schedules.h: hour: 25 is out of range 0-23" in out.stderr
    out = cli("policy", "run", bad, "--dry-run")
    assert out.returncode == 2 and "apps.shop.schedules.h" in out.stderr


def test_the_agent_runs_the_policy(cli: Cli) -> None:
    config = cli.root / "device.json"
    config.write_text(json.dumps(cli.config_data(snapshots=[CTRL])))
    policy = write_policy(
        cli, '[default]\nschedules = { m = "* * * * *" }\n[default.retention]\nlatest = 1\n'
    )
    reports = cli.root / "reports.json"
    cli.start_agent(config, reports, extra=("--policy", policy))
    agent = cli.agent
    assert agent is not None
    try:
        data = cli.wait_reports(reports, lambda d: len(d["apps"][0]["snapshots"]) == 2, timeout=60)
        ids = {s["id"] for s in data["apps"][0]["snapshots"]}
        assert CTRL in ids
    finally:
        assert cli.stop_agent() == 143  # SIGTERM: one line, exit 128+15
    assert "evesnap agent: policy: shop: created" in (agent.stderr.read() if agent.stderr else "")
    assert qcow2_snapshots(cli) == ids


def test_a_reapplied_controller_config_keeps_schedule_snapshots(cli: Cli) -> None:
    """The controller's list rules govern its own snapshots only (docs/policies.md)."""
    policy = write_policy(cli, HOURLY)
    assert run(cli, policy, "2026-12-01T00:05:00Z").returncode == 0
    assert len(listed(cli)) == 2
    assert cli("apply", str(cli.config(snapshots=[CTRL]))).returncode == 0
    assert len(listed(cli)) == 2

"""The executor on a real Orchestrator (in-memory backend, instant runtime, fake clock):
schedule snapshots made and pruned, hooks around them, vetoes, one app's failure
never stopping another, controller snapshots never deleted."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends
from evesnap_core.errors import InUse
from evesnap_core.model.config import DeviceConfig
from evesnap_core.model.validation import parse_model
from evesnap_core.orchestrator.engine import Orchestrator
from evesnap_core.policy.executor import app_facts, execute
from evesnap_core.policy.planner import AppPlan, Plan, Prune, plan
from evesnap_core.runtimes.runtime import Runtime
from evesnap_core.testing.memory import InstantRuntime, MemoryBackend, MemoryConfig
from evesnap_core.testing.memory_disk import MemoryDisk

from .helpers import APP, APP2, PLENTY, T0, policy

CTRL = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
VOL1 = "33333333-3333-4333-8333-333333333333"
VOL2 = "44444444-4444-4444-8444-444444444444"


class Device:
    def __init__(self, tmp_path: Path) -> None:
        self.disk = MemoryDisk()
        self.now = T0
        registry = load_backends(
            tmp_path,
            extra=[("memory", MemoryBackend.factory(MemoryConfig(), self.disk))],
            environ={"EVESNAP_BLOCK_PLUGINS": "qcow2,zfs,purgeable,reflink"},
        )
        self.orch = Orchestrator(registry, Runtime(InstantRuntime()), clock=lambda: self.now)
        app = {
            "activate": True,
            "snapshot": {"maxSnapshots": 5, "snapshots": []},
        }
        config: dict[str, Any] = {
            "apps": [
                {
                    **app,
                    "uuidandversion": {"uuid": str(APP), "version": "1"},
                    "displayname": "shop",
                    "volumeRefList": [{"uuid": VOL1}],
                    "snapshot": {"maxSnapshots": 5, "snapshots": [{"id": CTRL, "type": 2}]},
                },
                {
                    **app,
                    "uuidandversion": {"uuid": str(APP2), "version": "1"},
                    "displayname": "db",
                    "volumeRefList": [{"uuid": VOL2}],
                },
            ],
            "volumes": [
                {"uuid": v, "maxsizebytes": "1024", "origin": {"type": "VCOT_BLANK"}} for v in (VOL1, VOL2)
            ],
        }
        self.now = T0 - timedelta(days=30)
        self.orch.reconcile(parse_model(DeviceConfig, config))
        self.now = T0

    def run(self, pol_text: str, at: datetime) -> Any:
        self.now = at
        pol = policy(pol_text)
        made = plan(pol, at, app_facts(self.orch), PLENTY)
        return made, execute(made, self.orch)

    def schedule_ids(self, app: Any = APP) -> list[str]:
        snaps = self.orch.apps[app].snapshots.values()
        return [s.id for s in sorted(snaps, key=lambda s: s.created or s.requested) if s.origin == "schedule"]


HOURLY = """
[default]
schedules = { hourly = "0 * * * *" }
[default.retention]
hourly = 2
"""


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path)


def test_creates_and_prunes_through_the_orchestrator(device: Device) -> None:
    made_ids = []
    for h in range(5):
        _made, result = device.run(HOURLY, T0 + timedelta(hours=h, minutes=2))
        assert result.ok, result
        made_ids.append(result.apps[0].created)
    assert device.schedule_ids() == made_ids[-2:]
    snap = device.orch.apps[APP].snapshots[made_ids[-1]]
    assert snap.origin == "schedule" and snap.created == T0 + timedelta(hours=4, minutes=2)
    assert CTRL in device.orch.apps[APP].snapshots  # the controller's, 30 days old, stays
    pruned = [p for o in result.apps for p in o.prunes]
    assert [p.result for p in pruned] == ["deleted", "deleted"]  # one per app


def hook(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_pre_hook_veto_on_one_app_and_hooks_around_the_other(device: Device, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    pre = hook(
        tmp_path,
        "pre",
        f'echo "pre $EVESNAP_APP_NAME $EVESNAP_SCHEDULES" >> {log}\n'
        '[ "$EVESNAP_APP_NAME" = db ] && { echo "db is mid-transaction" >&2; exit 1; }\nexit 0\n',
    )
    post = hook(
        tmp_path,
        "post",
        f'echo "post $EVESNAP_APP_NAME $EVESNAP_SNAPSHOT_RESULT $EVESNAP_SNAPSHOT" >> {log}\n',
    )
    text = HOURLY + f'[default.hooks]\npre = ["{pre}"]\npost = ["{post}"]\ntimeout = 5\n'
    for h in range(3):
        _made, result = device.run(text, T0 + timedelta(hours=h))
    by = {o.app: o for o in result.apps}
    assert by[APP].created and by[APP].ok
    assert by[APP2].vetoed and by[APP2].created is None and not result.ok
    assert by[APP2].error == f"pre-hook vetoed the snapshot: {pre!r} exited with 1: db is mid-transaction"
    assert device.schedule_ids(APP2) == []
    lines = log.read_text().splitlines()
    assert f"post shop ok {by[APP].created}" in lines and "pre db hourly" in lines
    assert not any(line.startswith("post db") for line in lines)  # a vetoed snapshot has no post-hook


def test_a_failing_snapshot_skips_that_apps_prunes_and_never_stops_the_others(device: Device) -> None:
    for h in range(3):
        device.run(HOURLY, T0 + timedelta(hours=h))
    before = device.schedule_ids(APP)
    device.disk.fail("snapshot", f"{VOL1}#0", lambda key: InUse(f"volume {key} is busy"))
    _made, result = device.run(HOURLY, T0 + timedelta(hours=3))
    by = {o.app: o for o in result.apps}
    assert by[APP].error is not None and "snapshot failed" in by[APP].error and "busy" in by[APP].error
    assert [p.result for p in by[APP].prunes] == ["skipped"]
    assert device.schedule_ids(APP) == before  # nothing thinned out while snapshots fail
    assert by[APP2].created and [p.result for p in by[APP2].prunes] == ["deleted"]


def test_a_stale_plan_never_deletes_a_controller_snapshot(device: Device) -> None:
    forged = Plan(
        now=T0,
        timezone="UTC",
        apps=(
            AppPlan(
                app=APP,
                name="shop",
                section="default",
                enabled=True,
                prune=(Prune(snapshot=CTRL, created=T0, rule="latest=1", reason="forged"),),
            ),
        ),
    )
    result = execute(forged, device.orch)
    assert result.apps[0].prunes[0].result == "skipped"
    assert "origin controller" in result.apps[0].prunes[0].detail
    assert CTRL in device.orch.apps[APP].snapshots


def test_an_unexpected_error_in_one_app_is_reported_and_the_next_runs(device: Device) -> None:
    made, _ = device.run(HOURLY, T0)
    broken = made.model_copy(
        update={"apps": (made.apps[0].model_copy(update={"app": APP.__class__(int=7)}), *made.apps[1:])}
    )
    result = execute(broken, device.orch)
    assert result.apps[0].error is not None
    assert result.apps[1].app == APP2

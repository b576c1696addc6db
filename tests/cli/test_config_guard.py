"""The real `evesnap` command on configs a proto3 parser reads differently from
a careless one: typos warned about (and refused by --strict), unknown enum
numbers kept and handled as EVE does. Apps stay halted: no QEMU needed."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from ..support import APP, EVESNAP, VOL, Cli

SNAP = "6ba7b8a0-9dad-41d1-80b4-00c04fd430c8"
SNAP2 = "6ba7b8a1-9dad-41d1-80b4-00c04fd430c8"
TYPOS = [
    "apps[0].activte: unknown field; did you mean activate?",
    "apps[0].volumeRefLst: unknown field; did you mean volumeRefList?",
    "volumes[0].maxsizebyte: unknown field; did you mean maxsizebytes?",
]


def typo_config(cli: Cli) -> Path:
    data = cli.config_data(activate=False)
    app = data["apps"][0]
    app["activte"] = True
    app["volumeRefLst"] = [{"uuid": "6ba7b899-9dad-41d1-80b4-00c04fd430c8"}]
    data["volumes"][0]["maxsizebyte"] = "1048576"
    path = cli.root / "typos.json"
    path.write_text(json.dumps(data))
    return path


def warnings_of(app: dict[str, Any]) -> list[str]:
    return [e["description"] for e in app.get("appErr", []) if e.get("severity") == "SEVERITY_WARNING"]


def test_each_typo_is_one_warning_line_and_a_warning_on_the_app(cli: Cli) -> None:
    out = cli("apply", str(typo_config(cli)))
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "warning" in line]
    assert lines == [f"evesnap: warning: typos.json: {t}" for t in TYPOS]
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    assert warnings_of(app) == TYPOS


def test_strict_refuses_the_first_unknown_field_and_changes_nothing(cli: Cli) -> None:
    out = cli("apply", "--strict", str(typo_config(cli)))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert "apps[0].activte: unknown field; did you mean activate? (--strict refuses" in out.stderr
    assert cli.status()["apps"] == []
    assert cli("apply", "--strict", str(cli.config(activate=False))).returncode == 0


def test_agent_logs_each_typo_and_strict_agent_ignores_the_config(cli: Cli) -> None:
    reports = cli.root / "reports.json"
    config = typo_config(cli)
    cli.start_agent(config, reports)
    cli.wait_reports(reports, lambda d: any(warnings_of(a) == TYPOS for a in d["apps"]))
    agent = cli.agent
    assert agent is not None and agent.stderr is not None
    assert cli.stop_agent() == 143
    log = agent.stderr.read().splitlines()
    assert [line for line in log if ": warning: " in line] == [
        f"evesnap agent: warning: typos.json: {t}" for t in TYPOS
    ]

    strict = subprocess.Popen(
        [EVESNAP, "agent", "--strict", "--no-api", "--config", str(config), "--interval", "0.1"],
        env=cli.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert strict.stderr is not None
        line = strict.stderr.readline()  # the first thing it says
        assert "ignoring invalid" in line and "apps[0].activte: unknown field" in line, line
        assert "--strict refuses unknown fields" in line
    finally:
        strict.send_signal(signal.SIGTERM)
        assert strict.wait(timeout=60) == 143


def test_unknown_snapshot_type_is_not_taken_and_the_rest_applies(cli: Cli) -> None:
    data = cli.config_data(activate=False)
    data["apps"][0]["snapshot"]["snapshots"] = [{"id": SNAP, "type": 7}, {"id": SNAP2, "type": 2}]
    path = cli.root / "newer.json"
    path.write_text(json.dumps(data))
    out = cli("apply", str(path))
    assert out.returncode == 0, out.stderr
    assert "apps[0].snapshot.snapshots[0].type: SnapshotType number 7 is unknown" in out.stderr
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    assert [s["id"] for s in app["snapshots"]] == [SNAP2]
    assert f"snapshot {SNAP}: SnapshotType number 7 is unknown to this device; not taken" in warnings_of(app)
    volume = next(v for v in cli.status()["volumes"] if v["uuid"] == VOL)
    assert volume["state"] != "ERROR"

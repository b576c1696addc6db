"""The agent's reports file is what a controller parses: eve-api ZInfoMsg only,
each read strictly by Google's proto3 JSON parser; evesnap's own facts are in
`status --json` under `evesnap`, and curSizeBytes is the allocated size."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends

from ..support import APP, VOL, VOL2, Cli, controller_view, volume_rows

json_format = pytest.importorskip("google.protobuf.json_format")
from evesnap_core.model.eve_proto import info_message  # noqa: E402

OURS = ("backend", "location", "format", "virtualSizeBytes", "detailsError")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path, volumes=(VOL, VOL2))
    try:
        yield made
    finally:
        made.cleanup()


def actual_size(path: str) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(json.loads(out.stdout)["actual-size"])


def test_every_message_parses_strictly_and_sizes_are_allocated(cli: Cli) -> None:
    reports = cli.root / "reports.json"
    config = cli.root / "device.json"
    config.write_text(json.dumps(cli.config_data(activate=False, snapshots=[str(uuid.uuid4())])))
    cli.start_agent(config, reports)
    try:
        cli.wait_reports(reports, lambda d: len(d["apps"]) == 1 and d["apps"][0]["snapshots"])
    finally:
        assert cli.stop_agent() == 143
    text = reports.read_text()
    messages = json.loads(text)
    assert [m["ztype"] for m in messages] == ["ZiApp", "ZiVolume", "ZiVolume"]
    for m in messages:
        json_format.Parse(json.dumps(m), info_message("ZInfoMsg"))  # strict: no field of evesnap's own
        uuid.UUID(m["devId"])
        assert m["atTimeStamp"].endswith("Z")
    assert not any(f'"{name}"' in text for name in OURS)
    assert len({m["devId"] for m in messages}) == 1

    status = cli.status()
    rows = {v["uuid"]: v for v in volume_rows(status)}
    for m in messages[1:]:
        vol = m["vinfo"]
        allocated = actual_size(rows[vol["uuid"]]["location"])
        assert allocated > 0
        assert int(vol["resources"]["curSizeBytes"]) == allocated  # qemu-img's actual-size, not 0
        assert int(vol["resources"]["maxSizeBytes"]) == 16 * 1024 * 1024
    # the device id stays the same from one agent run to the next
    cli.start_agent(config, reports)
    try:
        again = cli.wait_reports(reports, lambda d: len(d["apps"]) == 1)
    finally:
        cli.stop_agent()
    assert again["apps"][0]["AppID"] == APP
    assert {m["devId"] for m in json.loads(reports.read_text())} == {messages[0]["devId"]}


def test_a_device_id_in_the_config_is_the_reports_dev_id(cli: Cli) -> None:
    device_id = str(uuid.uuid4())
    data = cli.config_data(activate=False)
    data["id"] = {"uuid": device_id, "version": "3"}
    config, reports = cli.root / "device.json", cli.root / "reports.json"
    config.write_text(json.dumps(data))
    cli.start_agent(config, reports)
    try:
        cli.wait_reports(reports, lambda d: len(d["apps"]) == 1)
    finally:
        cli.stop_agent()
    assert {m["devId"] for m in json.loads(reports.read_text())} == {device_id}


def test_status_json_keeps_evesnap_s_facts_apart(cli: Cli) -> None:
    out = cli("apply", "--json", str(cli.config(activate=False)))
    assert out.returncode == 0, out.stderr
    for data in (json.loads(out.stdout), cli.status()):
        for app in data["apps"]:
            json_format.ParseDict(app, info_message("ZInfoApp"))
        for vol in data["volumes"]:
            json_format.ParseDict(vol, info_message("ZInfoVolume"))  # nothing of evesnap's inside
        own = data["evesnap"]["volumes"]
        assert [(o["uuid"], o["generationCount"]) for o in own] == [
            (v["uuid"], v.get("generationCount", "0")) for v in data["volumes"]
        ]
        for o in own:
            assert o["backend"] == "qcow2" and o["format"] == "qcow2"
            assert o["location"].endswith(f"{o['uuid']}#0.qcow2")
            assert int(o["virtualSizeBytes"]) == 16 * 1024 * 1024
    view = controller_view([])
    assert view == {"apps": [], "volumes": []}


def test_binary_config_in_and_binary_reports_out(cli: Cli) -> None:
    from evesnap_core.model.binary import info_messages_from_binary
    from evesnap_core.model.eve_proto import config_message

    snap = str(uuid.uuid4())
    message = config_message("EdgeDevConfig")
    json_format.ParseDict(cli.config_data(activate=False, snapshots=[snap]), message)
    config = cli.root / "device.pb"
    config.write_bytes(message.SerializeToString())
    out = cli("apply", str(config))
    assert out.returncode == 0, out.stderr
    app = next(a for a in cli.status()["apps"] if a["AppID"] == APP)
    assert [s["id"] for s in app["snapshots"]] == [snap]

    unnamed = cli.root / "device-config"  # no suffix: told by its content
    unnamed.write_bytes(message.SerializeToString())
    reports = cli.root / "reports.pb"
    cli.start_agent(unnamed, reports)
    try:
        deadline = time.monotonic() + 60
        found: list[Any] = []
        while time.monotonic() < deadline and len(found) < 3:
            with contextlib.suppress(OSError, ValueError):
                found = info_messages_from_binary(reports.read_bytes())
            time.sleep(0.1)
    finally:
        assert cli.stop_agent() == 143
    assert [m.WhichOneof("InfoContent") for m in found] == ["ainfo", "vinfo", "vinfo"]
    assert found[0].ainfo.AppID == APP and found[0].ainfo.snapshots[0].id == snap
    assert all(m.vinfo.resources.curSizeBytes > 0 for m in found[1:])

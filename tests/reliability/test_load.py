"""Load: many apps, each with two real qcow2 volumes (1 MiB virtual) and several
snapshots, through the real `evesnap` command with the embedded runtime; then a
new process must restore and report every app, volume and snapshot, and every
qcow2 image's own snapshot table must hold exactly its app's snapshots.

The short form (20 apps) runs by default; the long form (200 apps, 400
volumes, 600 snapshots) is marked slow. Both print their timings (pytest -s).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evesnap_core.discovery import load_backends

from ..support import MIB, Cli, volume_rows

pytestmark = pytest.mark.qemu

SNAPSHOTS = 3


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    if "qcow2" not in load_backends(tmp_path).backends:
        pytest.skip("evesnap-qcow2 is not installed (run scripts/setup)")
    made = Cli(tmp_path)
    made.env["EVESNAP_RUNTIME"] = "embedded"
    try:
        yield made
    finally:  # no app processes with the embedded runtime: no need to delete volume by volume
        subprocess.run(["rm", "-rf", str(made.run_dir)], check=False)


class Fleet:
    def __init__(self, n_apps: int) -> None:
        self.apps = [str(uuid.uuid4()) for _ in range(n_apps)]
        self.volumes = {a: (str(uuid.uuid4()), str(uuid.uuid4())) for a in self.apps}
        self.snapshots = {a: [str(uuid.uuid4()) for _ in range(SNAPSHOTS)] for a in self.apps}

    def config(self, n_snapshots: int) -> dict[str, Any]:
        return {
            "apps": [
                {
                    "uuidandversion": {"uuid": a, "version": "1"},
                    "displayname": f"app-{i:03d}",
                    "activate": True,
                    "volumeRefList": [{"uuid": v} for v in self.volumes[a]],
                    "snapshot": {
                        "maxSnapshots": SNAPSHOTS,
                        "snapshots": [{"id": s, "type": 2} for s in self.snapshots[a][:n_snapshots]],
                    },
                }
                for i, a in enumerate(self.apps)
            ],
            "volumes": [
                {"uuid": v, "maxsizebytes": str(MIB), "origin": {"type": "VCOT_BLANK"}}
                for a in self.apps
                for v in self.volumes[a]
            ],
        }


def qcow2_tags(location: str) -> set[str]:
    out = subprocess.run(
        ["qemu-img", "snapshot", "-U", "-l", location], capture_output=True, text=True, check=True
    ).stdout
    return {word.split("-snapshot-")[1] for word in out.split() if "-snapshot-" in word}


def run_load(cli: Cli, n_apps: int) -> dict[str, float]:
    fleet = Fleet(n_apps)
    timings: dict[str, float] = {}
    for n in range(SNAPSHOTS + 1):
        path = cli.root / f"config-{n}.json"
        path.write_text(json.dumps(fleet.config(n)))
        start = time.monotonic()
        out = cli("apply", str(path), "--json")
        timings["deploy" if n == 0 else f"snapshot {n}"] = time.monotonic() - start
        assert out.returncode == 0, out.stderr[-3000:]

    start = time.monotonic()
    status = cli.status()  # a new process: everything from the persist folder
    timings["restart + status"] = time.monotonic() - start

    apps = {a["AppID"]: a for a in status["apps"]}
    volumes = {v["uuid"]: v for v in volume_rows(status)}
    assert len(apps) == n_apps and len(volumes) == 2 * n_apps
    for a in fleet.apps:
        assert [s["id"] for s in apps[a]["snapshots"]] == fleet.snapshots[a], apps[a]
        assert sorted(apps[a]["volumeRefs"]) == sorted(fleet.volumes[a])
        assert not apps[a]["appErr"]
        for v in fleet.volumes[a]:
            assert volumes[v]["state"] == "CREATED_VOLUME" and int(volumes[v]["virtualSizeBytes"]) == MIB

    start = time.monotonic()
    for a in fleet.apps:  # the images agree with the records, read with qemu-img
        for v in fleet.volumes[a]:
            assert qcow2_tags(volumes[v]["location"]) == set(fleet.snapshots[a])
    timings["qemu-img check of every image"] = time.monotonic() - start

    start = time.monotonic()
    again = cli("apply", str(cli.root / f"config-{SNAPSHOTS}.json"), "--json")  # restart, same config
    timings["restart + re-apply (no change)"] = time.monotonic() - start
    assert again.returncode == 0, again.stderr[-3000:]
    reports = json.loads(again.stdout)
    assert sum(len(a["snapshots"]) for a in reports["apps"]) == SNAPSHOTS * n_apps

    total = sum(timings.values())
    print(f"\nload: {n_apps} apps, {2 * n_apps} qcow2 volumes, {SNAPSHOTS * n_apps} snapshots")
    for what, seconds in timings.items():
        print(f"  {what:32s} {seconds:7.2f} s")
    print(f"  {'total':32s} {total:7.2f} s")
    return timings


def test_load_short(cli: Cli) -> None:
    run_load(cli, 20)


@pytest.mark.slow
def test_load_200_apps(cli: Cli) -> None:
    run_load(cli, 200)

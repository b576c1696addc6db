"""evesnap's main job: a real walk-through on this machine, step by step.

An app (a real QEMU process, no guest OS needed) runs with a purgeable OS volume
built from the bundled content image and a blank data volume, both qcow2. We
write data, update the app with an app-update snapshot, damage the data, roll
back, show that the bytes and the app version came back, and delete the
snapshot: the same controller config (proto3 JSON) an EVE controller sends,
given to the `evesnap` command line.

Run it with ``scripts/demo`` (which installs everything first), or
``.venv/bin/python contrib/demo/walkthrough.py [--keep]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from evesnap_core.runtimes.qemu import guest_device

HERE = Path(__file__).resolve().parent
EVESNAP = str(Path(sys.executable).with_name("evesnap"))
MIB = 1024 * 1024
APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
OS_VOL = "6ba7b811-9dad-41d1-80b4-00c04fd430c8"
DATA_VOL = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
TREES = ["6ba7b815-9dad-41d1-80b4-00c04fd430c8", "6ba7b816-9dad-41d1-80b4-00c04fd430c8"]
SNAP = "6ba7b820-9dad-41d1-80b4-00c04fd430c8"


class Walkthrough:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.step_no = 0
        self.started = time.monotonic()
        self.env = dict(
            os.environ,
            EVESNAP_PERSIST=str(workdir / "persist"),
            EVESNAP_RUNTIME_DIR=str(workdir / "run"),
            EVESNAP_CONTENT_ROOTS=f"{HERE}:{workdir}",  # the shipped image, and its v2 in the workdir
        )
        self.images = [HERE / "os-image.qcow2", workdir / "os-image-v2.qcow2"]

    # ------------------------------------------------------------ narration

    def step(self, text: str) -> None:
        self.step_no += 1
        print(f"\n[{time.monotonic() - self.started:5.1f}s] step {self.step_no}: {text}", flush=True)

    def say(self, text: str) -> None:
        print(f"         {text}", flush=True)

    # ------------------------------------------------------------ evesnap

    def evesnap(self, *args: str, show: bool = False) -> str:
        result = subprocess.run([EVESNAP, *args], env=self.env, capture_output=True, text=True, timeout=300)
        if result.returncode not in (0, 1):
            raise SystemExit(f"evesnap {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        if show:
            for line in result.stdout.rstrip().splitlines():
                print("         | " + line)
        return result.stdout

    def apply(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        path = self.workdir / name
        path.write_text(json.dumps(config, indent=2))
        self.say(f"$ evesnap apply {path.name}")
        return dict(json.loads(self.evesnap("apply", str(path), "--json")))

    def config(
        self, version: int, os_gen: int, snapshots: list[dict[str, Any]], counter: int = 0, active: str = ""
    ) -> dict[str, Any]:
        return {
            "apps": [
                {
                    "uuidandversion": {"uuid": APP, "version": str(version)},
                    "displayname": "demo-app",
                    "activate": True,
                    "volumeRefList": [{"uuid": OS_VOL, "generationCount": os_gen}, {"uuid": DATA_VOL}],
                    "snapshot": {
                        "snapshots": snapshots,
                        "maxSnapshots": 2,
                        "rollbackCmd": {"counter": counter},
                        "activeSnapshot": active,
                    },
                }
            ],
            "volumes": [
                {
                    "uuid": OS_VOL,
                    "generationCount": os_gen,
                    "displayName": "os",
                    "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREES[os_gen]},
                },
                {
                    "uuid": DATA_VOL,
                    "displayName": "data",
                    "maxsizebytes": 16 * MIB,
                    "origin": {"type": "VCOT_BLANK"},
                },
            ],
            "contentInfo": [
                {
                    "uuid": TREES[i],
                    "URL": self.images[i].as_uri(),
                    "iformat": "QCOW2",
                    "displayName": f"os-image v{i + 1}",
                }
                for i in range(2)
            ],
        }

    # ------------------------------------------------------------ the "guest"

    def qmp(self, command: str, **args: Any) -> Any:
        sock = next((self.workdir / "run").glob(f"*-{APP}.qmp"))
        client = QEMUMonitorProtocol(str(sock))
        client.connect()
        try:
            return client.cmd(command, **args)
        finally:
            client.close()

    def guest_write(self, volume_index: int, value: int) -> None:
        """Write 1 MiB into the running app's volume as its guest would (through QEMU)."""
        self.qmp(
            "human-monitor-command",
            **{"command-line": f'qemu-io -d {guest_device(volume_index)} "write -P {value} 0 1M"'},
        )
        self.qmp(
            "human-monitor-command",
            **{"command-line": f'qemu-io -d {guest_device(volume_index)} "flush"'},
        )

    def checksum(self, location: str) -> str:
        """sha256 of a volume's first MiB, read with qemu-img (never through evesnap)."""
        out = self.workdir / "read.raw"
        subprocess.run(
            ["qemu-img", "convert", "-U", "-O", "raw", location, str(out)], check=True, timeout=120
        )
        with open(out, "rb") as f:
            digest = hashlib.sha256(f.read(MIB)).hexdigest()[:16]
        out.unlink()
        return digest

    @staticmethod
    def volume(reports: dict[str, Any], uuid: str, generation: str | None = None) -> dict[str, Any]:
        own = reports["evesnap"]["volumes"]  # evesnap's facts (location...), in the volumes' order
        return next(
            {**extra, **v}
            for v, extra in zip(reports["volumes"], own, strict=True)
            if v["uuid"] == uuid and (generation is None or v.get("generationCount", "0") == generation)
        )

    @staticmethod
    def app(reports: dict[str, Any]) -> dict[str, Any]:
        return next(a for a in reports["apps"] if a["AppID"] == APP)

    # ------------------------------------------------------------ the story

    def run(self) -> None:
        self.step("make version 2 of the OS content image from the bundled one")
        shutil.copyfile(self.images[0], self.images[1])
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x33 0 1M", str(self.images[1])],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.say(f"{self.images[1].name}: first MiB rewritten with 0x33")

        self.step("deploy demo-app v1: a QEMU VM with a purgeable OS volume and a blank data volume")
        reports = self.apply("config-v1.json", self.config(1, 0, []))
        self.evesnap("status", show=True)
        data = self.volume(reports, DATA_VOL)["location"]

        self.step("the app writes its data (through QEMU, like a guest)")
        self.guest_write(1, 0xDA)
        good = self.checksum(data)
        self.say(f"data volume checksum: {good}")

        self.step("update to v2 (new OS content) with an app-update snapshot of v1")
        reports = self.apply(
            "config-v2.json", self.config(2, 1, [{"id": SNAP, "type": "SNAPSHOT_TYPE_APP_UPDATE"}])
        )
        snap = self.app(reports)["snapshots"][0]
        self.say(
            f"app version now {self.app(reports)['appVersion']}; snapshot {snap['id']} "
            f"holds config version {snap['configVersion']}"
        )
        self.evesnap("snapshot", "list", "demo-app", show=True)
        os_v2 = self.volume(reports, OS_VOL, "1")["location"]
        self.say(f"OS volume generation 1 checksum: {self.checksum(os_v2)} (the v2 content)")

        self.step("something goes wrong: the data gets damaged")
        self.guest_write(1, 0x66)
        self.say(f"data volume checksum: {self.checksum(data)} (was {good})")

        self.step("roll back: the controller bumps rollback_cmd.counter")
        reports = self.apply(
            "config-rollback.json",
            self.config(2, 1, [{"id": SNAP, "type": "SNAPSHOT_TYPE_APP_UPDATE"}], counter=1, active=SNAP),
        )
        version = self.app(reports)["appVersion"]
        restored = self.checksum(data)
        self.say(f"app version reported: {version} (the snapshot's config version)")
        self.say(f"data volume checksum: {restored} -> {'RESTORED' if restored == good else 'WRONG'}")
        os_back = self.volume(reports, OS_VOL, "0")["location"]
        self.say(f"OS volume is generation 0 again: {os_back}")
        self.say(f"the VM runs: {self.qmp('query-status')['status']}")
        if restored != good or version != "1":
            raise SystemExit("walk-through FAILED: the rollback did not restore the app")

        self.step(
            "delete the snapshot: the controller leaves it out of its list (done now where the volumes allow)"
        )
        reports = self.apply("config-delete.json", self.config(2, 1, [], counter=1, active=SNAP))
        self.say(f"snapshots reported: {[s['id'] for s in self.app(reports).get('snapshots', [])]}")
        self.evesnap("snapshot", "list", "demo-app", show=True)

        self.step("remove the app: its VM stops, its snapshots and unused volumes are freed")
        self.apply("config-empty.json", {"apps": [], "volumes": [], "contentInfo": []})
        self.evesnap("status", show=True)
        print(f"\nwalk-through finished in {time.monotonic() - self.started:.1f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder for a look afterwards")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="evesnap-demo-"))
    print(f"evesnap walk-through; work folder {workdir}")
    walk = Walkthrough(workdir)
    try:
        walk.run()
    finally:
        subprocess.run(
            [EVESNAP, "apply", "/dev/stdin"],
            input='{"apps": []}',
            env=walk.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

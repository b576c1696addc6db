"""A device for end-to-end tests: the real `evesnap` CLI and agent as processes,
real qcow2 volumes, apps as real QEMU processes, bytes checked with qemu tools.

Apps get two volumes like the reference's manual tests: a purgeable OS volume
built from a content image (its generation bumps on an update) and a blank data
volume.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from evesnap_core.runtimes.qemu import guest_device as device
from evesnap_core.testing.conformance.harness import qemu_io_read

from ..support import controller_view, volume_rows

EVESNAP = str(Path(sys.executable).with_name("evesnap"))
MIB = 1024 * 1024
APP = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
OS_VOL = "6ba7b811-9dad-41d1-80b4-00c04fd430c8"
DATA_VOL = "6ba7b814-9dad-41d1-80b4-00c04fd430c8"
TREE = [
    "6ba7b815-9dad-41d1-80b4-00c04fd430c8",
    "6ba7b816-9dad-41d1-80b4-00c04fd430c8",
    "6ba7b817-9dad-41d1-80b4-00c04fd430c8",
]


def new_id() -> str:
    return str(uuid.uuid4())


class Device:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.persist = root / "persist"
        self.config_path = root / "config.json"
        self.reports_path = root / "reports.json"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EVESNAP_")}
        self.env["EVESNAP_PERSIST"] = str(self.persist)
        # QMP sockets need a short path (unix sockets stop at 108 bytes)
        self.run_dir = Path(tempfile.mkdtemp(prefix="es-e2e-", dir="/tmp"))
        self.env["EVESNAP_RUNTIME_DIR"] = str(self.run_dir)
        self.agent: subprocess.Popen[bytes] | None = None
        self.contents = [self._content(i) for i in range(len(TREE))]

    # ------------------------------------------------------------ content and config

    def _content(self, version: int) -> Path:
        """A content image whose first MiB is a pattern naming its version."""
        path = self.root / f"os-v{version + 1}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "8M"], check=True)
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", f"write -P {0x10 + version} 0 1M", str(path)],
            check=True,
            capture_output=True,
        )
        return path

    def config(
        self,
        version: int = 1,
        os_gen: int = 0,
        snapshots: list[tuple[str, int]] | None = None,
        max_snapshots: int = 5,
        counter: int = 0,
        active: str = "",
        activate: bool = True,
        with_app: bool = True,
    ) -> dict[str, Any]:
        apps = (
            [
                {
                    "uuidandversion": {"uuid": APP, "version": str(version)},
                    "displayname": "demo-app",
                    "activate": activate,
                    "volumeRefList": [{"uuid": OS_VOL, "generationCount": os_gen}, {"uuid": DATA_VOL}],
                    "snapshot": {
                        "snapshots": [{"id": i, "type": t} for i, t in (snapshots or [])],
                        "maxSnapshots": max_snapshots,
                        "rollbackCmd": {"counter": counter},
                        "activeSnapshot": active,
                    },
                }
            ]
            if with_app
            else []
        )
        return {
            "apps": apps,
            "volumes": [
                {
                    "uuid": OS_VOL,
                    "generationCount": os_gen,
                    "maxsizebytes": 8 * MIB,
                    "origin": {"type": "VCOT_DOWNLOAD", "downloadContentTreeID": TREE[os_gen]},
                },
                {"uuid": DATA_VOL, "maxsizebytes": 8 * MIB, "origin": {"type": "VCOT_BLANK"}},
            ],
            "contentInfo": [
                {"uuid": TREE[i], "URL": path.as_uri(), "iformat": "QCOW2"}
                for i, path in enumerate(self.contents)
            ],
        }

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        tmp.rename(self.config_path)

    # ------------------------------------------------------------ the CLI

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([EVESNAP, *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"evesnap {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def apply(self, config: dict[str, Any]) -> dict[str, Any]:
        self.write_config(config)
        out = self.cli("apply", str(self.config_path), "--json", check=False)
        if out.returncode not in (0, 1):
            raise AssertionError(f"apply failed ({out.returncode}): {out.stderr}")
        return dict(json.loads(out.stdout))

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json").stdout))

    # ------------------------------------------------------------ the agent

    def start_agent(self, crash_at: str | None = None) -> None:
        env = dict(self.env)
        if crash_at:
            env["EVESNAP_CRASH_AT"] = crash_at
        self.agent = subprocess.Popen(
            [
                EVESNAP,
                "agent",
                "--config",
                str(self.config_path),
                "--reports",
                str(self.reports_path),
                "--interval",
                "0.2",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def kill_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait(timeout=30)
        self.agent = None

    def wait_agent_exit(self, timeout: float = 120) -> int:
        assert self.agent is not None
        return self.agent.wait(timeout=timeout)

    def reports(self) -> dict[str, Any]:
        """The agent's reports (eve-api ZInfoMsg, each parsed strictly) as {"apps", "volumes"}."""
        try:
            return controller_view(json.loads(self.reports_path.read_text()))
        except (OSError, ValueError):
            return {}

    def wait_for(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reports = self.reports()
            if reports and predicate(reports):
                return reports
            if self.agent is not None and self.agent.poll() is not None:
                err = self.agent.stderr.read().decode() if self.agent.stderr else ""
                raise AssertionError(
                    f"agent exited ({self.agent.returncode}) waiting for {what}: {err[-2000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; last reports: {json.dumps(self.reports())[:3000]}"
        )

    # ------------------------------------------------------------ bytes

    def volume(self, report: dict[str, Any], volume_uuid: str) -> dict[str, Any]:
        """The volume's report with evesnap's own facts (backend, location), which
        the controller's reports do not carry, from `status --json`."""
        vol = next(v for v in report["volumes"] if v["uuid"] == volume_uuid)
        gen = vol.get("generationCount", "0")
        own = next(
            v for v in volume_rows(self.status()) if v["uuid"] == volume_uuid and v["generationCount"] == gen
        )
        return {**own, **vol}

    def read(self, location: str, length: int = MIB, offset: int = 0) -> bytes:
        return qemu_io_read(location, "qcow2", offset, length)

    def qmp_socket(self) -> Path:
        return next(self.run_dir.glob(f"*-{APP}.qmp"))

    def write_live(self, index: int, value: int, offset: int = 0, length: int = MIB) -> None:
        """Write into the running app's volume `index` the way a guest would (HMP qemu-io)."""
        qmp = QEMUMonitorProtocol(str(self.qmp_socket()))
        qmp.connect()
        try:
            qmp.cmd(
                "human-monitor-command",
                **{"command-line": f'qemu-io -d {device(index)} "write -P {value} {offset} {length}"'},
            )
            qmp.cmd(
                "human-monitor-command",
                **{"command-line": f'qemu-io -d {device(index)} "flush"'},
            )
        finally:
            qmp.close()

    def qmp(self, command: str, **args: Any) -> Any:
        qmp = QEMUMonitorProtocol(str(self.qmp_socket()))
        qmp.connect()
        try:
            return qmp.cmd(command, **args)
        finally:
            qmp.close()

    def cleanup(self) -> None:
        self.kill_agent()
        for pidfile in (self.persist / "run" / "apps").glob("*/qemu.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        shutil.rmtree(self.run_dir, ignore_errors=True)
